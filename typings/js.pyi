# Pyodide's `js` module (the JavaScript global scope), only the names oculus_lite_pyodide uses.
# It exists only inside Pyodide, so mypy needs this stub wherever it runs.
from typing import Any

AbortController: Any
Object: Any

def fetch(resource: str, init: Any = ...) -> Any: ...
def setTimeout(callback: Any, delay: int) -> Any: ...
def clearTimeout(handle: Any) -> None: ...
