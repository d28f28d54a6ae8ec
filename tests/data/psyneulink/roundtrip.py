"""Reload every <name>.json of this folder in PsyNeuLink (pnl_run.py) and compare with <name>.expected.json.

    /work/pnl-venv/bin/python tests/data/psyneulink/roundtrip.py [NAME ...]

Writes roundtrip_results.json: per fixture "match" (max abs difference), "DIFF" (with both
values), "ERROR" (the last line of PsyNeuLink's traceback) or "TIMEOUT".
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 180


def compare(expected, got):
    out = {}
    for k, v in expected.items():
        if k not in got:
            out[k] = {'status': 'MISSING', 'have': sorted(got)}
            continue
        try:
            a, b = np.array(v, float), np.array(got[k], float)
            if a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12):
                out[k] = {'status': 'match', 'max_abs_diff': float(np.max(np.abs(a - b))) if a.size else 0.0}
            else:
                out[k] = {'status': 'DIFF', 'expected': v, 'got': got[k]}
        except Exception as e:  # ragged
            out[k] = {'status': 'match' if v == got[k] else 'DIFF', 'note': str(e)}
    return out


def main(names):
    path = os.path.join(HERE, 'roundtrip_results.json')
    results = {}
    if names and os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    for exp_file in sorted(glob.glob(os.path.join(HERE, '*.expected.json'))):
        name = os.path.basename(exp_file)[:-len('.expected.json')]
        if names and name not in names:
            continue
        model = os.path.join(HERE, f'{name}.json')
        with open(exp_file) as f:
            expected = json.load(f)
        if not os.path.exists(model):
            results[name] = {'status': 'NO_EXPORT', 'note': expected.get('export_error')}
            print(name, 'NO_EXPORT')
            continue
        script_out = f'/tmp/pnl_roundtrip_{name}.py'
        try:
            p = subprocess.run([sys.executable, os.path.join(HERE, 'pnl_run.py'), model, exp_file,
                                '--script-out', script_out], capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            results[name] = {'status': 'TIMEOUT', 'note': f'pnl_run.py did not finish in {TIMEOUT_S} s'}
            print(name, 'TIMEOUT')
            continue
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            err = next((ln for ln in reversed(lines) if 'Error' in ln or 'Exception' in ln), lines[-1] if lines else '')
            results[name] = {'status': 'ERROR', 'error': err.strip()[:1000]}
            print(name, 'ERROR', err[:300])
            continue
        got = json.loads(p.stdout.strip().splitlines()[-1])
        entry = {}
        if expected.get('outputs') is not None:
            entry['outputs'] = compare(expected['outputs'], got['outputs'])
        if expected.get('outputs_after_learning') is not None:
            entry['vs_outputs_after_learning'] = {k: v['status'] for k, v in
                                                  compare(expected['outputs_after_learning'], got['outputs']).items()}
        if expected.get('reference_outputs_unmodified_gru') is not None:
            entry['vs_unmodified_gru'] = compare(expected['reference_outputs_unmodified_gru'], got['outputs'])
            if expected.get('outputs') is None:
                entry['got'] = got['outputs']
        stats = [v['status'] for v in entry.get('outputs', entry.get('vs_unmodified_gru', {})).values()]
        entry['status'] = 'match' if stats and all(s == 'match' for s in stats) else 'DIFF'
        results[name] = entry
        print(name, entry['status'])
    with open(path, 'w') as f:
        json.dump(results, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1:])
