# From: PsyNeuLink's documentation page "AutodiffComposition", the older version (headed 0.13.0.0;
#   TransferMechanism takes size=)
# Section: Examples, first example: "how to create
#   a simple AutodiffComposition, specify its inputs and targets, and run it with learning enabled and disabled"
# The doc's code follows as written (doctest prompts ">>> " and "... " removed); the one change is its first line,
# `import psyneulink as pnl` -> `import mdfbridge as pnl`. The two lines marked "harness" are not the doc's: the doc
# runs in PsyNeuLink's doctest namespace, which provides `np`, and the seed makes np.random.randn draw the same
# matrix in the mdfbridge and the PsyNeuLink run. tests/psyneulink_doc_repl.py runs this file as the interactive
# interpreter does (recording each expression statement's echoed value) and then prints the values the
# "harness-values" line names, as JSON; tests/test_psyneulink_doc_examples.py compares them.
import mdfbridge as pnl
import numpy as np  # harness
np.random.seed(17)  # harness
# Set up PsyNeuLink Components
my_mech_1 = pnl.TransferMechanism(function=pnl.Linear, size = 3)
my_mech_2 = pnl.TransferMechanism(function=pnl.Linear, size = 2)
my_projection = pnl.MappingProjection(matrix=np.random.randn(3,2),
                    sender=my_mech_1,
                    receiver=my_mech_2)
# Create AutodiffComposition
my_autodiff = pnl.AutodiffComposition()
my_autodiff.add_node(my_mech_1)
my_autodiff.add_node(my_mech_2)
my_autodiff.add_projection(sender=my_mech_1, projection=my_projection, receiver=my_mech_2)
# Specify inputs and targets
my_inputs = {my_mech_1: [[1, 2, 3]]}
my_targets = {my_mech_2: [[4, 5]]}
input_dict = {"inputs": my_inputs, "targets": my_targets, "epochs": 2}
# Run Composition in learnng mode
my_autodiff.learn(inputs = input_dict)
# Run Composition in test mode
my_autodiff.run(inputs = input_dict['inputs'])
# harness-values: my_autodiff.results my_projection.matrix
