# Pyodide's own `pyodide` package: only importable inside Pyodide. See ffi.pyi.
