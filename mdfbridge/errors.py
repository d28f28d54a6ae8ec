"""One exception hierarchy for everything mdfbridge reports to a user."""
from __future__ import annotations

from typing import Optional, Sequence


class MdfBridgeError(Exception):
    """Base class: a user-facing error whose message names where and what.

    message: what went wrong and what was expected; where: the place (a file, 'node 'x'', a JSON path), put in
    front of the message as 'where: message' (default None: the message alone). Attribute `where` keeps it.
    """

    def __init__(self, message: str, *, where: Optional[str] = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class DocumentError(MdfBridgeError):
    """A file could not be read as JSON/YAML (syntax), or is not an MDF document.

    message: what is wrong; path: the file (default None: '<document>'); line, column: 1-based position of the
    error in the file (default None: not known; column is shown only with a line). The message reads
    'path:line:column: message'; attributes `path`, `line`, `column` keep them.
    """

    def __init__(self, message: str, *, path: Optional[str] = None, line: Optional[int] = None,
                 column: Optional[int] = None) -> None:
        self.path, self.line, self.column = path, line, column
        where = path or "<document>"
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        super().__init__(message, where=where)


class SchemaError(MdfBridgeError):
    """The document parses but violates the MDF schema (names the JSON path and what was expected).

    message: what is wrong and what was expected; path: the file (default None: '<document>'); json_path: where in
    the document, as a JSON path such as '$.model.graphs.g.nodes.n' (default '$', the top level). The message
    reads 'path at json_path: message'; attributes `path` and `json_path` keep them.
    """

    def __init__(self, message: str, *, path: Optional[str] = None, json_path: str = "$") -> None:
        self.path, self.json_path = path, json_path
        super().__init__(message, where=f"{path or '<document>'} at {json_path}")


class UnknownFunctionError(MdfBridgeError):
    """A node uses a function (or ONNX op) mdfbridge does not know.

    name: the unknown function; node: the node that calls it (keyword); supported: the names that are known (listed
    sorted in the message). Attributes `name`, `node`, `supported` keep them.
    """

    def __init__(self, name: str, *, node: str, supported: Sequence[str]) -> None:
        self.name, self.node, self.supported = name, node, sorted(supported)
        super().__init__(f"unknown function '{name}'; supported: {', '.join(self.supported)}",
                         where=f"node '{node}'")


class UnsupportedError(MdfBridgeError):
    """A construct is valid MDF/ONNX but not supported by the chosen path (names what and, if any, an alternative)."""


class ShapeError(MdfBridgeError):
    """Two shapes that must agree do not (names the edge/port ids and both shapes)."""


class CycleError(MdfBridgeError):
    """A cycle in the graph has no initial value to start from (names the nodes on it).

    nodes: the node ids along the cycle, in order (attribute `nodes`); where: the place, as for MdfBridgeError
    (default None).
    """

    def __init__(self, nodes: Sequence[str], *, where: Optional[str] = None) -> None:
        self.nodes = list(nodes)
        super().__init__("cycle without an initial value through nodes " + " -> ".join(self.nodes),
                         where=where)


class ExpressionError(MdfBridgeError):
    """An expression is not in the safe subset (or fails to parse); nothing was evaluated."""


class DataError(MdfBridgeError):
    """Input/target data do not fit the model (unknown node names, shapes, NaN)."""


class CompositionError(MdfBridgeError):
    """The Python composition API was used inconsistently (unknown node, size mismatch, ...)."""


class OnnxError(MdfBridgeError):
    """An ONNX file is broken or refused: it does not parse, is empty, names an IR version or opset newer than the
    installed onnx reads, holds initializers whose data is missing, short or outside the model's folder, or onnx /
    onnxruntime reject it (their message, made one line)."""
