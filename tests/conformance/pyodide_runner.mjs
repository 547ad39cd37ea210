// Loads oculus_lite (from this checkout, mounted with NODEFS) into Pyodide under Node.js
// and runs one Python snippet (argv[4]) with top-level await; prints what it prints.
// usage: node pyodide_runner.mjs <dir holding pyodide.mjs> <repo root> <python code>
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [pyodideDir, repo, code] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const py = await loadPyodide({ indexURL: pyodideDir });
py.FS.mkdirTree("/repo");
py.FS.mount(py.FS.filesystems.NODEFS, { root: repo }, "/repo");
py.runPython(`
import sys
sys.path[:0] = ["/repo", "/repo/transports/oculus_lite_pyodide"]
sys.dont_write_bytecode = True
`);
try {
  await py.runPythonAsync(code);
} catch (err) {
  console.error(String(err));
  process.exit(1);
}
