//! The names the validator refuses, with why. Found by walking every public attribute (modules
//! and classes, six levels deep) of every allowed module and of every public submodule of numpy
//! 1.24, scipy 1.10 and matplotlib 3.6.3 in the compute image `mecapy-python:bookworm` (Python
//! 3.11), and by reading their sources for `pickle`, `exec`, `eval`, `subprocess` and imports by
//! name.
//!
//! The validator cannot know the type of an object, so these are names, refused on any object:
//! `x.sys` is refused whatever `x` is.

/// Attribute names refused on any object, and as names imported with `from m import name` or
/// as a component of `import a.b.c`.
#[rustfmt::skip]
pub const FORBIDDEN_ATTRIBUTES: &[&str] = &[
    // Modules that reach the process, the interpreter or native code, found as attributes of
    // allowed modules: `statistics.sys`, `dataclasses.builtins`, `enum.bltns` (builtins),
    // `dataclasses.types` (FunctionType/CodeType run raw bytecode), `dataclasses.inspect`
    // (frames), `numpy.lib.format.pickle`, `numpy.core.fromnumeric.types`, `timeit.gc`
    // (gc.get_objects finds every module), ... and the hard-banned imports.
    "os", "sys", "subprocess", "socket", "ctypes", "multiprocessing", "importlib", "shutil",
    "pathlib", "builtins", "bltns", "threading", "pty", "pickle", "marshal", "gc", "inspect",
    "codeop", "mmap", "urllib", "ftplib", "asyncio", "types", "platform", "sysconfig", "atexit",
    "posix", "nt", "pydoc", "runpy",
    // numpy and scipy: ctypes (`numpy.ctypeslib`, `ndarray.ctypes`) and shared libraries;
    // `numpy.compat` (`npy_load_module` runs any .py file, `compat.pickle`); `numpy.testing`
    // (`extbuild` compiles and imports C); `numpy.distutils` (`exec_command` runs a shell) and
    // `numpy.f2py` (compiles and imports); `lookfor(module=...)` imports a module by name, so a
    // .py file the job wrote; `NpzFile(allow_pickle=...)` unpickles; `as_strided` and
    // `DummyArray` (an array over any address) read and write memory outside any array;
    // `LowLevelCallable` calls a native function pointer.
    "ctypeslib", "compat", "testing", "distutils", "f2py", "setuptools", "load_library",
    "npy_load_module", "lookfor", "NpzFile", "as_strided", "DummyArray", "LowLevelCallable",
    // matplotlib 3.6 (the python tool allows it): `switch_backend` and `register_backend`
    // import a module named by a string (`module://name`: a .py file the job wrote; the image
    // refuses `module://` too, which also covers `matplotlib.use`, a name `style.use` shares);
    // `animation`'s movie writers run the program `rcParams["animation.ffmpeg_path"]` names
    // (`/bin/sh` runs a script the job wrote); `sphinxext` (`plot_directive` exec()s code
    // strings); `PIL`, `Image` (Pillow as `matplotlib.image.PIL`, `matplotlib.colors.Image`:
    // its `ImageShow` viewers run shell commands, `ImageMath.eval` evaluates strings);
    // `logging` (`matplotlib.logging`: `logging.config.dictConfig` calls callables named by
    // strings, `fileConfig` evaluates a file's text); `traceback` (`cbook.traceback.walk_stack`
    // hands out frames); `unittest` and `mock` (`mock.patch.dict("os.environ")` resolves any
    // dotted name); `Signature` and `from_callable` (`inspect.Signature` as
    // `matplotlib.artist.Signature`: `eval_str=True` evaluates string annotations). Left
    // allowed: `Path` (`matplotlib.Path` is pathlib's, but `matplotlib.path.Path` is the
    // geometry every patch uses), `cbook`, `backends` (`PdfPages`), `get_cachedir`, `getp` and
    // `setp` (they call only `get_*`/`set_*` methods), reading and writing files (as `open`).
    "switch_backend", "register_backend", "animation", "sphinxext", "PIL", "Image", "ImageShow",
    "ImageMath", "logging", "traceback", "unittest", "mock", "Signature", "from_callable",
    // Process functions, should a module object be reached some other way.
    "system", "popen", "Popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execl",
    "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl", "spawnle",
    "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "check_output",
    "check_call", "getoutput", "getstatusoutput", "exec_command", "startfile", "CDLL", "PyDLL",
    "cdll", "pydll", "LoadLibrary", "dlopen",
    // Evaluation and access by a computed name: `operator.attrgetter("_os")(random)`,
    // `string.Formatter().get_field("0._os", [random], {})`, and `typing.get_type_hints` (also
    // run by `functools.singledispatch`'s `register`) which evaluates string annotations and
    // `ForwardRef`s.
    "eval", "exec", "getattr", "setattr", "delattr", "globals", "locals", "vars", "breakpoint",
    "attrgetter", "methodcaller", "Formatter", "get_field", "get_type_hints", "ForwardRef",
    "singledispatch", "singledispatchmethod",
    // Frames and code objects (`(x for x in ()).gi_frame.f_builtins["eval"]`).
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals", "f_locals",
    "f_builtins", "f_back", "f_code", "tb_frame", "tb_next",
];

/// Private attributes that are public API: the namedtuple methods.
pub const ALLOWED_PRIVATE_ATTRIBUTES: &[&str] =
    &["_replace", "_asdict", "_fields", "_make", "_field_defaults"];

/// Modules `from m import *` may name: their `__all__` holds nothing refused. (`from numpy
/// import *` brings `ctypeslib`, `lookfor` and `load` in as bare names, out of sight.)
pub const STAR_IMPORTABLE: &[&str] = &["math", "cmath", "scipy.constants"];

/// Functions that unpickle, and so run any code, when given `allow_pickle=True` (a keyword or
/// a positional argument) — `numpy.load`, `numpy.lib.npyio.load`, `numpy.lib.format.
/// read_array` — with how many positional arguments are safe.
pub const PICKLE_LOADERS: &[(&str, usize)] = &[("load", 2), ("read_array", 1)];

/// Is `value` an object dtype spelled literally (`object`, `"O"`, `"|O8"`, `np.object_`,
/// `[("a", "O")]`, `np.dtype("O")`)? An object array over raw bytes forges object pointers.
pub fn is_object_dtype(value: &rustpython_parser::ast::Expr) -> bool {
    use rustpython_parser::ast::{Constant, Expr};
    match value {
        Expr::Constant(c) => match &c.value {
            Constant::Str(s) => {
                let code = s.trim_start_matches(['|', '<', '>', '=']);
                code == "object"
                    || code
                        .strip_prefix('O')
                        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
            }
            _ => false,
        },
        Expr::Name(name) => name.id.as_str() == "object",
        Expr::Attribute(a) => matches!(a.attr.as_str(), "object_" | "object"),
        Expr::List(l) => l.elts.iter().any(is_object_dtype),
        Expr::Tuple(t) => t.elts.iter().any(is_object_dtype),
        Expr::Dict(d) => d.values.iter().any(is_object_dtype),
        Expr::Call(call) => call.args.iter().any(is_object_dtype),
        _ => false,
    }
}
