# pyodide.ffi, only the names oculus_lite_pyodide uses (exists only inside Pyodide).
from typing import Any, Callable

class JsException(Exception):
    name: str

def create_once_callable(obj: Callable[..., Any], /) -> Any: ...
def to_js(obj: Any, /, *, dict_converter: Any = ..., depth: int = ...) -> Any: ...
