//! Static validation of submitted Python code, before anything runs.
//!
//! The code is parsed with the real Python grammar (`rustpython-parser`) and the whole syntax tree
//! is walked. Each [`Finding`] names a rule and the exact 1-based line and column of the offending
//! node, so the user learns early and precisely why the code is refused. The sandbox remains the
//! security boundary: this pass catches the obvious escape routes, it does not prove safety.
//!
//! Rules (the `rule` strings are part of the API):
//! - `syntax-error`: the code does not parse (the only finding then) or is nested too deeply;
//! - `import-not-allowed`: an import whose top-level module is not allowed, a relative import,
//!   or `from m import *` (except from [`STAR_IMPORTABLE`] modules);
//! - `forbidden-call`: a reference to one of [`FORBIDDEN_NAMES`];
//! - `dunder-access`: an attribute whose name starts and ends with `__`, or one of
//!   [`FORBIDDEN_DUNDER_NAMES`] used as a bare name or defined, or one of
//!   [`FORBIDDEN_DUNDER_STRINGS`] written as a string;
//! - `private-access`: an attribute whose name starts with `_` (`random._os`), also imported
//!   (`from random import _os`, `import numpy._core`);
//! - `forbidden-attribute`: an attribute named in [`FORBIDDEN_ATTRIBUTES`] (`statistics.sys`,
//!   `numpy.ctypeslib`, `operator.attrgetter`, `gen.gi_frame`), on any object, also imported
//!   (`from numpy import ctypeslib`, `import numpy.ctypeslib`);
//! - `unsafe-call`: `allow_pickle` that is not a literal `False` (unpickling runs any code), a
//!   pickle loader ([`PICKLE_LOADERS`]) given `*args`/`**kwargs` or used other than by a direct
//!   call, `ndarray` over a raw buffer, `memmap` with an object dtype, a class built by
//!   `type(name, bases, namespace)`;
//! - `module-alias`: a module bound by `import` used other than through its attributes
//!   (`n = numpy`), which would hide the next attribute access from the checks above.
//!
//! Blind spots (the sandbox is the boundary): the checks follow names, not types or values, so
//! a function re-bound through a name that is not an `import` (`from numpy import lib; l =
//! lib; f = l.npyio.load`) is not followed; strings are not code to the validator, so attribute names
//! computed at run time reach only what `str.format` can read (`"{0._os}".format(random)`
//! gives text, not the object), and names computed at run time are not seen (dict keys of
//! `dataclasses.make_dataclass(namespace=...)`, a metaclass's `__prepare__` mapping); numpy's memory-unsafe corners (object arrays over raw memory through a
//! dtype computed at run time) remain reachable; only numpy 1.24, scipy 1.10, matplotlib 3.6.3
//! and the Python 3.11 standard library of the compute image were surveyed.
//!
//! Python folds identifiers with NFKC (`ｅval` is `eval`); identifiers are folded to ASCII for the
//! usual compatibility characters (full-width, mathematical letters, ligatures, long s) first.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;

use rustpython_parser::ast::{self, fold, Fold, Ranged};
use rustpython_parser::source_code::RandomLocator;
use rustpython_parser::text_size::{TextRange, TextSize};
use rustpython_parser::Parse;

mod surface;
pub use surface::{
    ALLOWED_PRIVATE_ATTRIBUTES, FORBIDDEN_ATTRIBUTES, PICKLE_LOADERS, STAR_IMPORTABLE,
};

/// Modules allowed by [`Policy::default_python`].
#[rustfmt::skip]
pub const DEFAULT_ALLOWED_IMPORTS: &[&str] = &[
    "numpy", "scipy", "math", "cmath", "json", "csv", "statistics", "random", "decimal",
    "fractions", "itertools", "functools", "collections", "dataclasses", "typing", "datetime",
    "time", "re", "string", "textwrap", "enum", "heapq", "bisect", "array", "copy", "pprint",
    "operator",
];

/// Modules never allowed, even when a tool's allow-list names them: they reach the process, the
/// file system, the network or the interpreter's internals.
#[rustfmt::skip]
pub const HARD_BANNED_IMPORTS: &[&str] = &[
    "os", "sys", "subprocess", "socket", "ctypes", "multiprocessing", "importlib", "shutil",
    "pathlib", "builtins", "threading", "signal", "pty", "pickle", "marshal", "gc", "inspect",
    "code", "codeop", "resource", "mmap", "urllib", "http", "ftplib", "requests", "asyncio",
];

/// Builtins that evaluate code or reach objects by name; any reference to them is refused.
/// `help("name")` imports a module by name (a `.py` file the job wrote). `open` is allowed:
/// jobs write their outputs to `/work/out`.
#[rustfmt::skip]
pub const FORBIDDEN_NAMES: &[&str] = &[
    "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "breakpoint", "input", "memoryview", "help",
];

/// Dunder names refused as bare names, read or assigned, and as names of functions or classes
/// (`__name__` stays allowed; `__radd__ = __add__` too). `__annotations__` written in a class
/// body injects source into the code `@dataclass` generates; `__array_interface__` makes numpy
/// build an array over any address.
#[rustfmt::skip]
pub const FORBIDDEN_DUNDER_NAMES: &[&str] = &[
    "__builtins__", "__loader__", "__spec__", "__annotations__", "__dict__", "__class__",
    "__globals__", "__code__", "__array_interface__", "__array_struct__", "__build_class__",
];

/// Dunder attributes ordinary scientific code uses and that open no escape route
/// (`super().__init__()`, `np.__version__`, `f.__name__`, `f.__doc__`).
pub const ALLOWED_DUNDER_ATTRIBUTES: &[&str] = &["__init__", "__name__", "__doc__", "__version__"];

/// Dunder names refused even as string literals: as the keys of a namespace they set what
/// [`FORBIDDEN_DUNDER_NAMES`] refuses to assign (`type("A", (), {"__annotations__": ...})`).
pub const FORBIDDEN_DUNDER_STRINGS: &[&str] = &[
    "__annotations__",
    "__array_interface__",
    "__array_struct__",
    "__builtins__",
];

/// Deepest statement/expression/pattern nesting walked; deeper code is refused as a syntax error.
const MAX_DEPTH: usize = 1_000;

/// Stack of the validation thread: a base for the walk (at most [`MAX_DEPTH`] levels), plus room
/// for the parser and the tree's drop, whose recursion is bounded by the code length (each nesting
/// level takes at least one byte, e.g. `---…-1`). Untouched stack pages cost no memory.
const STACK_BASE: usize = 16 << 20;
const STACK_PER_CODE_BYTE: usize = 512;

/// How many allowed modules an `import-not-allowed` message lists before truncating.
const LISTED_MODULES: usize = 12;

pub use mecapy_domain::error::Finding;

/// What a tool's code may import.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allowed top-level module names, e.g. `"numpy"`. [`HARD_BANNED_IMPORTS`] always win.
    pub allowed_imports: Vec<String>,
}

impl Policy {
    /// The default allow-list for the python tool ([`DEFAULT_ALLOWED_IMPORTS`]).
    pub fn default_python() -> Self {
        let allowed_imports = DEFAULT_ALLOWED_IMPORTS
            .iter()
            .map(|m| m.to_string())
            .collect();
        Self { allowed_imports }
    }

    /// A tool row's list (empty list = the default). Entries are reduced to their top-level
    /// module (`"scipy.linalg"` allows `scipy`); hard-banned modules are dropped.
    pub fn from_allowed(list: &[String]) -> Self {
        let mut allowed_imports: Vec<String> = Vec::new();
        for entry in list {
            let top = top_level(entry.trim());
            if !top.is_empty()
                && !HARD_BANNED_IMPORTS.contains(&top)
                && !allowed_imports.iter().any(|m| m == top)
            {
                allowed_imports.push(top.to_string());
            }
        }
        if allowed_imports.is_empty() && list.iter().all(|e| e.trim().is_empty()) {
            return Self::default_python();
        }
        Self { allowed_imports }
    }

    fn allows(&self, module: &str) -> bool {
        !HARD_BANNED_IMPORTS.contains(&module) && self.allowed_imports.iter().any(|m| m == module)
    }

    fn describe(&self) -> String {
        let listed: Vec<&str> = self
            .allowed_imports
            .iter()
            .map(String::as_str)
            .filter(|m| !HARD_BANNED_IMPORTS.contains(m))
            .collect();
        if listed.is_empty() {
            return "no module may be imported".to_string();
        }
        let mut text = format!(
            "allowed: {}",
            listed[..listed.len().min(LISTED_MODULES)].join(", ")
        );
        if listed.len() > LISTED_MODULES {
            text.push_str(&format!(", … ({} more)", listed.len() - LISTED_MODULES));
        }
        text
    }
}

/// All findings, sorted by (line, column); empty means the code may run.
///
/// Runs on its own thread whose stack is sized for the code, so that deeply nested code cannot
/// overflow the caller's stack; a panic in the parser refuses the code instead of propagating.
pub fn validate(code: &str, policy: &Policy) -> Vec<Finding> {
    let stack = STACK_BASE.saturating_add(code.len().saturating_mul(STACK_PER_CODE_BYTE));
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("python-validation".to_string())
            .stack_size(stack)
            .spawn_scoped(scope, || validate_here(code, policy))
            .map(|handle| handle.join())
    });
    match outcome {
        Ok(Ok(findings)) => findings,
        Ok(Err(_panic)) => vec![Finding {
            line: 1,
            column: 1,
            rule: "syntax-error".to_string(),
            message: "the parser failed on this code".to_string(),
        }],
        // No thread available: validate on the caller's stack.
        Err(_spawn) => validate_here(code, policy),
    }
}

fn validate_here(code: &str, policy: &Policy) -> Vec<Finding> {
    let mut locator = RandomLocator::new(code);
    let suite = match ast::Suite::parse(code, "<code>") {
        Ok(suite) => suite,
        Err(error) => {
            let (line, column) = locate(&mut locator, code, error.offset);
            let message = lowercase_first(&error.error.to_string());
            let rule = "syntax-error".to_string();
            return vec![Finding {
                line,
                column,
                rule,
                message,
            }];
        }
    };
    let mut checker = Checker {
        code,
        policy,
        depth: 0,
        too_deep: false,
        raw: Vec::new(),
        collecting: true,
        bindings: Bindings::default(),
        direct_callees: HashSet::new(),
        attribute_bases: HashSet::new(),
    };
    // First pass: what the imports bind, wherever they are (a function may use a name that a
    // later line imports). Second pass: the checks.
    let suite = infallible(checker.fold(suite));
    checker.collecting = false;
    infallible(checker.fold(suite));
    let mut findings: Vec<Finding> = checker
        .raw
        .into_iter()
        .map(|(offset, rule, message)| {
            let (line, column) = locate(&mut locator, code, offset);
            Finding {
                line,
                column,
                rule: rule.to_string(),
                message,
            }
        })
        .collect();
    findings.sort_by_key(|f| (f.line, f.column));
    findings.dedup();
    findings
}

/// 1-based (line, column in characters) of a byte offset, clamped into the source.
fn locate(locator: &mut RandomLocator<'_>, code: &str, offset: TextSize) -> (u32, u32) {
    let mut offset = usize::from(offset).min(code.len());
    while !code.is_char_boundary(offset) {
        offset -= 1;
    }
    let offset = TextSize::try_from(offset).unwrap_or_default();
    let location = locator.locate(offset);
    (location.row.get(), location.column.get())
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn top_level(module: &str) -> &str {
    module.split('.').next().unwrap_or(module).trim()
}

fn is_dunder(name: &str) -> bool {
    name.len() > 4
        && name.starts_with("__")
        && name.ends_with("__")
        && !ALLOWED_DUNDER_ATTRIBUTES.contains(&name)
}

fn is_private(name: &str) -> bool {
    name.starts_with('_')
        && !ALLOWED_DUNDER_ATTRIBUTES.contains(&name)
        && !ALLOWED_PRIVATE_ATTRIBUTES.contains(&name)
}

/// The name a call or reference ends with: `f` in `f(...)`, `load` in `np.lib.load(...)`.
fn last_name(expr: &ast::Expr) -> Option<&str> {
    match expr {
        ast::Expr::Name(name) => Some(name.id.as_str()),
        ast::Expr::Attribute(attribute) => Some(attribute.attr.as_str()),
        _ => None,
    }
}

/// The name an attribute chain starts from: `np` in `np.lib.npyio.load`.
fn root_name(expr: &ast::Expr) -> Option<&str> {
    match expr {
        ast::Expr::Name(name) => Some(name.id.as_str()),
        ast::Expr::Attribute(attribute) => root_name(&attribute.value),
        _ => None,
    }
}

fn is_false_literal(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Constant(c) if matches!(c.value, ast::Constant::Bool(false)))
}

/// What the imports bind: module names (`import numpy as np` → `np`), names imported from a
/// module, and the local names of pickle loaders (`from numpy import load as l` → `l`).
#[derive(Default)]
struct Bindings {
    modules: HashSet<String>,
    imported: HashSet<String>,
    loaders: HashMap<String, usize>,
}

/// The identifier as Python sees it, for the compatibility characters that matter here: NFKC
/// maps them to ASCII letters, digits or `_`. Other characters are kept as written.
fn fold_identifier(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        return Cow::Borrowed(name);
    }
    let letter = |i: u32| char::from_u32(if i < 26 { 0x41 + i } else { 0x47 + i });
    let mut folded = String::with_capacity(name.len());
    for c in name.chars() {
        let code = c as u32;
        let mapped = match code {
            0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0),
            0x1D400..=0x1D6A3 => letter((code - 0x1D400) % 52),
            0x1D7CE..=0x1D7FF => char::from_u32(0x30 + (code - 0x1D7CE) % 10),
            0x017F => Some('s'),
            0x2071 | 0x2139 | 0x2148 => Some('i'),
            0x207F => Some('n'),
            0x212F | 0x2147 => Some('e'),
            0x210E => Some('h'),
            0x2113 => Some('l'),
            0x2134 => Some('o'),
            0xFE33 | 0xFE34 | 0xFE4D..=0xFE4F => Some('_'),
            _ => None,
        };
        let ligature =
            ["ff", "fi", "fl", "ffi", "ffl", "st", "st"].get(code.wrapping_sub(0xFB00) as usize);
        match (mapped, ligature) {
            (Some(m), _) => folded.push(m),
            (None, Some(ligature)) => folded.push_str(ligature),
            (None, None) => folded.push(c),
        }
    }
    Cow::Owned(folded)
}

/// The identifier as written, quoted, followed by what Python reads when the two differ.
fn shown(name: &str) -> String {
    match fold_identifier(name) {
        Cow::Owned(folded) if folded != name => format!("`{name}` (read as `{folded}`)"),
        _ => format!("`{name}`"),
    }
}

/// Walks the whole tree (through the crate's generic fold) and records raw findings.
struct Checker<'a> {
    code: &'a str,
    policy: &'a Policy,
    depth: usize,
    too_deep: bool,
    raw: Vec<(TextSize, &'static str, String)>,
    /// The first pass only records [`Bindings`].
    collecting: bool,
    bindings: Bindings,
    /// Ranges of expressions that are the callee of a call, and of names that are the base of
    /// an attribute access: recorded at the parent, read when the child is visited.
    direct_callees: HashSet<TextRange>,
    attribute_bases: HashSet<TextRange>,
}

impl Checker<'_> {
    fn report(&mut self, offset: TextSize, rule: &'static str, message: String) {
        self.raw.push((offset, rule, message));
    }

    /// Offset of `name` inside `range` (first or last occurrence), else the range start.
    fn find_in(&self, range: TextRange, name: &str, last: bool) -> TextSize {
        let start = usize::from(range.start());
        let text = self.code.get(start..usize::from(range.end())).unwrap_or("");
        let found = if last {
            text.rfind(name)
        } else {
            text.find(name)
        };
        found
            .and_then(|i| TextSize::try_from(start + i).ok())
            .unwrap_or(range.start())
    }

    fn check_module(&mut self, offset: TextSize, module: &str) {
        let folded = fold_identifier(module);
        let top = top_level(&folded);
        if HARD_BANNED_IMPORTS.contains(&top) {
            let message = format!("import of `{top}` is never allowed");
            self.report(offset, "import-not-allowed", message);
        } else if !self.policy.allows(top) {
            let message = format!(
                "import of `{top}` is not allowed; {}",
                self.policy.describe()
            );
            self.report(offset, "import-not-allowed", message);
        }
    }

    /// An attribute name, wherever it is read: `x.name`, `from m import name`, `import m.name`,
    /// `case C(name=...)`.
    fn check_attribute(&mut self, offset: TextSize, name: &str) {
        let folded = fold_identifier(name);
        if is_dunder(&folded) {
            let message = format!("access to {} is not allowed", shown(name));
            self.report(offset, "dunder-access", message);
        } else if is_private(&folded) {
            let message = format!(
                "access to the private name {} is not allowed (name it without the leading '_')",
                shown(name)
            );
            self.report(offset, "private-access", message);
        } else if FORBIDDEN_ATTRIBUTES.contains(&folded.as_ref()) {
            let message = format!(
                "access to {} is not allowed: it reaches the process, native code or the \
                 interpreter's internals",
                shown(name)
            );
            self.report(offset, "forbidden-attribute", message);
        }
    }

    /// Each component after the first of a dotted module path (`numpy.ctypeslib`).
    fn check_module_path(&mut self, range: TextRange, module: &str) {
        for component in module.split('.').skip(1) {
            let offset = self.find_in(range, component, false);
            self.check_attribute(offset, component);
        }
    }

    fn record_bindings(&mut self, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::Import(import) => {
                for alias in &import.names {
                    let bound = match &alias.asname {
                        Some(asname) => asname.as_str(),
                        None => top_level(alias.name.as_str()),
                    };
                    self.bindings.modules.insert(bound.to_string());
                }
            }
            ast::Stmt::ImportFrom(import) => {
                for alias in &import.names {
                    let name = alias.name.as_str();
                    let bound = alias.asname.as_ref().map_or(name, |a| a.as_str());
                    self.bindings.imported.insert(bound.to_string());
                    if let Some(&(_, limit)) = PICKLE_LOADERS.iter().find(|(n, _)| *n == name) {
                        self.bindings.loaders.insert(bound.to_string(), limit);
                    }
                }
            }
            _ => {}
        }
    }

    fn is_import_rooted(&self, expr: &ast::Expr) -> bool {
        root_name(expr).is_some_and(|root| {
            self.bindings.modules.contains(root) || self.bindings.imported.contains(root)
        })
    }

    fn check_call(&mut self, call: &ast::ExprCall) {
        self.direct_callees.insert(call.func.range());
        for keyword in &call.keywords {
            if keyword
                .arg
                .as_ref()
                .is_some_and(|a| a.as_str() == "allow_pickle")
                && !is_false_literal(&keyword.value)
            {
                let message = "`allow_pickle` must be the literal `False`: unpickling runs \
                               any code"
                    .to_string();
                self.report(keyword.range.start(), "unsafe-call", message);
            }
        }
        let Some(callee) = last_name(&call.func) else {
            return;
        };
        let callee = fold_identifier(callee);
        let unpacked = call.args.iter().any(|a| matches!(a, ast::Expr::Starred(_)))
            || call.keywords.iter().any(|k| k.arg.is_none());
        let start = call.range.start();
        let loader = PICKLE_LOADERS
            .iter()
            .find(|(n, _)| *n == callee)
            .map(|&(_, safe)| safe)
            .or_else(|| match call.func.as_ref() {
                ast::Expr::Name(_) => self.bindings.loaders.get(callee.as_ref()).copied(),
                _ => None,
            });
        if let Some(safe) = loader {
            if unpacked {
                let message = format!(
                    "`{callee}` may not be called with *args or **kwargs: its `allow_pickle` \
                     must be seen to be False"
                );
                self.report(start, "unsafe-call", message);
            } else if let Some(arg) = call.args.get(safe) {
                if !is_false_literal(arg) {
                    let message = format!(
                        "argument {} of `{callee}` is `allow_pickle`: it must be the literal \
                         `False`, or pass the other arguments by keyword",
                        safe + 1
                    );
                    self.report(arg.range().start(), "unsafe-call", message);
                }
            }
        }
        if callee == "ndarray"
            && (unpacked
                || call.args.len() > 2
                || call.keywords.iter().any(|k| {
                    k.arg
                        .as_ref()
                        .is_some_and(|a| matches!(a.as_str(), "buffer" | "offset" | "strides"))
                }))
        {
            let message = "`ndarray` over a raw buffer can forge object pointers; use \
                           `numpy.frombuffer` or `numpy.array`"
                .to_string();
            self.report(start, "unsafe-call", message);
        }
        if callee == "type" && (unpacked || call.args.len() > 1 || !call.keywords.is_empty()) {
            let message = "building a class with `type(name, bases, namespace)` is not allowed: \
                           its namespace can hold any name; write a `class` statement"
                .to_string();
            self.report(start, "unsafe-call", message);
        }
        if callee == "memmap" {
            let dtype = call.args.get(1).or_else(|| {
                call.keywords
                    .iter()
                    .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "dtype"))
                    .map(|k| &k.value)
            });
            if dtype.is_some_and(surface::is_object_dtype) {
                let message = "`memmap` with an object dtype reads object pointers from a \
                               file"
                    .to_string();
                self.report(start, "unsafe-call", message);
            }
        }
    }

    fn check_stmt(&mut self, stmt: &ast::Stmt) {
        if self.collecting {
            self.record_bindings(stmt);
            return;
        }
        match stmt {
            ast::Stmt::Import(import) => {
                for alias in &import.names {
                    self.check_module(alias.range.start(), alias.name.as_str());
                    self.check_module_path(alias.range, alias.name.as_str());
                }
            }
            ast::Stmt::ImportFrom(import) => {
                let level = import.level.as_ref().map_or(0, |l| l.to_u32());
                match (&import.module, level) {
                    (Some(module), 0) => {
                        let top = top_level(module.as_str());
                        let offset = self.find_in(import.range, top, false);
                        self.check_module(offset, module.as_str());
                        self.check_module_path(import.range, module.as_str());
                    }
                    _ => {
                        let message = "relative import is not allowed".to_string();
                        self.report(import.range.start(), "import-not-allowed", message);
                    }
                }
                for alias in &import.names {
                    let name = alias.name.as_str();
                    if name == "*" {
                        let module = import.module.as_ref().map_or("", |m| m.as_str());
                        if !STAR_IMPORTABLE.contains(&module) {
                            let message = format!(
                                "`from {module} import *` is not allowed: import the names \
                                 you use"
                            );
                            self.report(alias.range.start(), "import-not-allowed", message);
                        }
                    } else {
                        self.check_attribute(alias.range.start(), name);
                    }
                }
            }
            ast::Stmt::FunctionDef(ast::StmtFunctionDef { name, range, .. })
            | ast::Stmt::AsyncFunctionDef(ast::StmtAsyncFunctionDef { name, range, .. })
            | ast::Stmt::ClassDef(ast::StmtClassDef { name, range, .. }) => {
                let folded = fold_identifier(name.as_str());
                if FORBIDDEN_DUNDER_NAMES.contains(&folded.as_ref()) {
                    let offset = self.find_in(*range, name.as_str(), false);
                    let message = format!("defining {} is not allowed", shown(name.as_str()));
                    self.report(offset, "dunder-access", message);
                }
            }
            _ => {}
        }
    }

    fn check_expr(&mut self, expr: &ast::Expr) {
        if self.collecting {
            return;
        }
        match expr {
            ast::Expr::Name(name) => {
                let id = fold_identifier(name.id.as_str());
                let loaded = matches!(name.ctx, ast::ExprContext::Load);
                let called = self.direct_callees.contains(&name.range);
                if loaded && FORBIDDEN_NAMES.contains(&id.as_ref()) {
                    let message = format!("{} is not allowed", shown(name.id.as_str()));
                    self.report(name.range.start(), "forbidden-call", message);
                } else if FORBIDDEN_DUNDER_NAMES.contains(&id.as_ref()) {
                    let message = format!("access to {} is not allowed", shown(name.id.as_str()));
                    self.report(name.range.start(), "dunder-access", message);
                } else if loaded && !called && self.bindings.loaders.contains_key(id.as_ref()) {
                    let message = format!(
                        "{} unpickles with `allow_pickle`: it may only be called directly",
                        shown(name.id.as_str())
                    );
                    self.report(name.range.start(), "unsafe-call", message);
                } else if loaded
                    && self.bindings.modules.contains(id.as_ref())
                    && !self.attribute_bases.contains(&name.range)
                {
                    let message = format!(
                        "the module {} may only be used through its attributes (`{}.name`): \
                         passed around, what is read from it cannot be checked",
                        shown(name.id.as_str()),
                        name.id
                    );
                    self.report(name.range.start(), "module-alias", message);
                }
            }
            ast::Expr::Attribute(attribute) => {
                if let ast::Expr::Name(base) = attribute.value.as_ref() {
                    self.attribute_bases.insert(base.range);
                }
                let attr = attribute.attr.as_str();
                let offset = self.find_in(attribute.range, attr, true);
                self.check_attribute(offset, attr);
                let folded = fold_identifier(attr);
                if PICKLE_LOADERS.iter().any(|(n, _)| *n == folded)
                    && !self.direct_callees.contains(&attribute.range)
                    && self.is_import_rooted(&attribute.value)
                {
                    let message = format!(
                        "{} unpickles with `allow_pickle`: it may only be called directly",
                        shown(attr)
                    );
                    self.report(offset, "unsafe-call", message);
                }
            }
            ast::Expr::Call(call) => self.check_call(call),
            ast::Expr::Constant(constant) => {
                // `type("A", (), {"__annotations__": ...})`: the name as a dict key.
                if let ast::Constant::Str(text) = &constant.value {
                    if FORBIDDEN_DUNDER_STRINGS.contains(&text.as_str()) {
                        let message = format!("the name `{text}` is not allowed, even as a string");
                        self.report(constant.range.start(), "dunder-access", message);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_pattern(&mut self, pattern: &ast::Pattern) {
        if self.collecting {
            return;
        }
        // `case C(__class__=c)` reads the attribute `__class__` of the subject.
        if let ast::Pattern::MatchClass(class) = pattern {
            for (attr, sub) in class.kwd_attrs.iter().zip(&class.kwd_patterns) {
                let before = TextRange::new(class.range.start(), sub.range().start());
                let offset = self.find_in(before, attr.as_str(), true);
                self.check_attribute(offset, attr.as_str());
            }
        }
    }

    /// Runs `walk` one level deeper, or refuses the node once the nesting limit is reached.
    fn nested<T>(&mut self, node: T, start: TextSize, walk: fn(&mut Self, T) -> T) -> T {
        if self.depth >= MAX_DEPTH {
            if !self.too_deep && !self.collecting {
                self.too_deep = true;
                let message = format!("code is nested too deeply (more than {MAX_DEPTH} levels)");
                self.report(start, "syntax-error", message);
            }
            return node;
        }
        self.depth += 1;
        let node = walk(self, node);
        self.depth -= 1;
        node
    }
}

/// Unwraps a fold result that cannot fail.
fn infallible<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

impl Fold<TextRange> for Checker<'_> {
    type TargetU = TextRange;
    type Error = Infallible;
    type UserContext = ();

    fn will_map_user(&mut self, _user: &TextRange) {}

    fn map_user(&mut self, user: TextRange, _context: ()) -> Result<TextRange, Infallible> {
        Ok(user)
    }

    fn fold_stmt(&mut self, node: ast::Stmt) -> Result<ast::Stmt, Infallible> {
        self.check_stmt(&node);
        let start = node.start();
        Ok(self.nested(node, start, |c, n| infallible(fold::fold_stmt(c, n))))
    }

    fn fold_expr(&mut self, node: ast::Expr) -> Result<ast::Expr, Infallible> {
        self.check_expr(&node);
        let start = node.start();
        Ok(self.nested(node, start, |c, n| infallible(fold::fold_expr(c, n))))
    }

    fn fold_pattern(&mut self, node: ast::Pattern) -> Result<ast::Pattern, Infallible> {
        self.check_pattern(&node);
        let start = node.start();
        Ok(self.nested(node, start, |c, n| infallible(fold::fold_pattern(c, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: &str) -> Vec<(u32, u32, String)> {
        check_with(code, &Policy::default_python())
    }

    fn check_with(code: &str, policy: &Policy) -> Vec<(u32, u32, String)> {
        let findings = validate(code, policy);
        findings
            .into_iter()
            .map(|f| (f.line, f.column, f.rule))
            .collect()
    }

    fn at(line: u32, column: u32, rule: &str) -> (u32, u32, String) {
        (line, column, rule.to_string())
    }

    #[test]
    fn accepts_a_numpy_program_reading_csv_and_writing_its_result_with_open() {
        let code = r#"
import csv
import json
import numpy as np
from math import sqrt
import scipy.optimize

def load(path):
    with open(path, newline="") as f:
        return [[float(v) for v in row] for row in csv.reader(f)]

@staticmethod
def norm(values, scale=sqrt(2)):
    return float(np.linalg.norm(np.asarray(values))) / scale

class Model:
    def __init__(self, rows):
        self.rows = rows

if __name__ == "__main__":
    rows = load("/work/in/data.csv")
    result = {"norm": norm(rows), "label": f"{len(rows)} rows", "ok": __name__ != ''}
    with open("/work/out/result.json", "w") as out:
        json.dump(result, out)
"#;
        assert_eq!(check(code), vec![]);
    }

    #[test]
    fn accepts_main_guard_scipy_from_math_re_compile_and_empty_code() {
        assert_eq!(check("if __name__ == '__main__':\n    pass\n"), vec![]);
        assert_eq!(
            check("import scipy\nfrom scipy.linalg import solve\n"),
            vec![]
        );
        assert_eq!(check("from math import sqrt\nprint(sqrt(2))\n"), vec![]);
        assert_eq!(check("import re\npattern = re.compile('a+')\n"), vec![]);
        assert_eq!(
            check("input = 3  # assigning the name is harmless\n"),
            vec![]
        );
        assert_eq!(check(""), vec![]);
        assert_eq!(check("\n# only a comment\n"), vec![]);
    }

    #[test]
    fn syntax_error_is_the_only_finding_with_the_parser_position_and_message() {
        let findings = validate("import os\nif x\n    pass\n", &Policy::default_python());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!((findings[0].line, findings[0].column), (2, 5));
        assert_eq!(findings[0].rule, "syntax-error");
        assert!(
            findings[0].message.contains("unexpected token"),
            "{findings:?}"
        );
        assert_eq!(check("x = (1 +\n"), vec![at(2, 1, "syntax-error")]);
    }

    #[test]
    fn refuses_import_os_on_line_3_at_the_module_name() {
        let code = "import math\n\nimport os\n";
        assert_eq!(check(code), vec![at(3, 8, "import-not-allowed")]);
        let message = &validate(code, &Policy::default_python())[0].message;
        assert_eq!(message, "import of `os` is never allowed");
    }

    #[test]
    fn refuses_dotted_and_from_imports_of_forbidden_modules() {
        assert_eq!(
            check("import os.path\n"),
            vec![at(1, 8, "import-not-allowed")]
        );
        let expected = vec![at(1, 6, "import-not-allowed")];
        assert_eq!(check("from subprocess import run\n"), expected);
        assert_eq!(check("from os.path import join\n"), expected);
        assert_eq!(
            check("import numpy, socket\n"),
            vec![at(1, 15, "import-not-allowed")]
        );
    }

    #[test]
    fn refuses_modules_outside_the_allow_list_and_names_the_allowed_ones() {
        let findings = validate("import pandas\n", &Policy::default_python());
        assert_eq!(findings[0].rule, "import-not-allowed");
        let message = &findings[0].message;
        assert!(message.starts_with("import of `pandas` is not allowed; allowed: numpy, scipy"));
        assert!(message.ends_with("… (15 more)"), "{message}");
    }

    #[test]
    fn refuses_relative_imports() {
        assert_eq!(
            check("from . import x\n"),
            vec![at(1, 1, "import-not-allowed")]
        );
        assert_eq!(
            check("from ..numpy import x\n"),
            vec![at(1, 1, "import-not-allowed")]
        );
    }

    #[test]
    fn hard_banned_module_is_refused_even_when_the_tool_lists_it() {
        let listed = ["os".to_string(), " pandas.io ".to_string()];
        let policy = Policy::from_allowed(&listed);
        assert_eq!(policy.allowed_imports, vec!["pandas".to_string()]);
        assert_eq!(check_with("import pandas\n", &policy), vec![]);
        assert_eq!(
            check_with("import os\n", &policy),
            vec![at(1, 8, "import-not-allowed")]
        );
        let forced = Policy {
            allowed_imports: vec!["sys".to_string()],
        };
        assert_eq!(
            check_with("import sys\n", &forced),
            vec![at(1, 8, "import-not-allowed")]
        );
        assert_eq!(check_with("import numpy\n", &policy).len(), 1);
        let default = Policy::from_allowed(&[]).allowed_imports;
        assert_eq!(default, Policy::default_python().allowed_imports);
    }

    #[test]
    fn refuses_dunder_import_call() {
        assert_eq!(
            check("m = __import__('os')\n"),
            vec![at(1, 5, "forbidden-call")]
        );
    }

    #[test]
    fn refuses_eval_inside_a_nested_function() {
        let code = "def outer():\n    def inner():\n        return eval(\"1\")\n    return inner\n";
        assert_eq!(check(code), vec![at(3, 16, "forbidden-call")]);
        let message = &validate(code, &Policy::default_python())[0].message;
        assert_eq!(message, "`eval` is not allowed");
    }

    #[test]
    fn refuses_exec_inside_a_lambda_and_a_comprehension() {
        assert_eq!(
            check("f = lambda s: exec(s)\n"),
            vec![at(1, 15, "forbidden-call")]
        );
        let code = "r = [exec(s) for s in xs if s]\n";
        assert_eq!(check(code), vec![at(1, 6, "forbidden-call")]);
        let code = "r = {k: v for k, v in zip(a, map(exec, b))}\n";
        assert_eq!(check(code), vec![at(1, 34, "forbidden-call")]);
    }

    #[test]
    fn refuses_getattr_and_reports_it_once() {
        let code = "y = getattr(x, '__class__')\n";
        assert_eq!(check(code), vec![at(1, 5, "forbidden-call")]);
    }

    #[test]
    fn refuses_each_dunder_in_the_subclasses_escape() {
        let code = "x = 1\nk = ().__class__.__bases__[0].__subclasses__()\n";
        let expected = vec![
            at(2, 8, "dunder-access"),
            at(2, 18, "dunder-access"),
            at(2, 31, "dunder-access"),
        ];
        assert_eq!(check(code), expected);
        let messages: Vec<String> = validate(code, &Policy::default_python())
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(messages[0], "access to `__class__` is not allowed");
        assert_eq!(messages[2], "access to `__subclasses__` is not allowed");
    }

    #[test]
    fn refuses_dict_globals_and_bare_builtins() {
        assert_eq!(check("d = x.__dict__\n"), vec![at(1, 7, "dunder-access")]);
        assert_eq!(
            check("g = f.__globals__\n"),
            vec![at(1, 7, "dunder-access")]
        );
        assert_eq!(check("b = __builtins__\n"), vec![at(1, 5, "dunder-access")]);
        assert_eq!(check("__spec__\n"), vec![at(1, 1, "dunder-access")]);
    }

    #[test]
    fn walks_decorators_defaults_fstrings_try_with_match_and_classes() {
        let code = r#"
@decorate(vars)
def f(a=globals(), *, b=locals):
    try:
        pass
    except Exception as e:
        print(f"{e} {x.__class__}")
    with ctx(compile) as c:
        pass
class C(Base, metaclass=setattr):
    field: delattr = 1
match value:
    case object(__class__=cls):
        breakpoint()
    case memoryview.x:
        pass
"#;
        let expected = vec![
            at(2, 11, "forbidden-call"),
            at(3, 9, "forbidden-call"),
            at(3, 25, "forbidden-call"),
            at(7, 24, "dunder-access"),
            at(8, 14, "forbidden-call"),
            at(10, 25, "forbidden-call"),
            at(11, 12, "forbidden-call"),
            at(13, 17, "dunder-access"),
            at(14, 9, "forbidden-call"),
            at(15, 10, "forbidden-call"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn harmless_dunders_of_ordinary_classes_are_accepted() {
        let code = "import numpy as np\nclass A(B):\n    def __init__(self):\n        super().__init__()\nprint(np.__version__, A.__name__, A.__doc__)\n";
        assert_eq!(check(code), vec![]);
    }

    #[test]
    fn findings_are_sorted_by_position_and_columns_count_characters() {
        let code = "é = eval('1'); import os\nx.__dict__\n";
        let expected = vec![
            at(1, 5, "forbidden-call"),
            at(1, 23, "import-not-allowed"),
            at(2, 3, "dunder-access"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn compatibility_characters_do_not_hide_forbidden_names() {
        // Python reads `ｅval` as `eval` and `__ｃlass__` as `__class__` (NFKC).
        assert_eq!(check("y = ｅval('1')\n"), vec![at(1, 5, "forbidden-call")]);
        assert_eq!(check("y = x.__ｃlass__\n"), vec![at(1, 7, "dunder-access")]);
        assert_eq!(check("import ｏs\n"), vec![at(1, 8, "import-not-allowed")]);
        let message = &validate("y = ｅval\n", &Policy::default_python())[0].message;
        assert_eq!(message, "`ｅval` (read as `eval`) is not allowed");
    }

    #[test]
    fn refuses_private_attributes_random_os_and_what_follows() {
        let code = "import random\nrandom._os.system(\"id\")\n";
        assert_eq!(
            check(code),
            vec![at(2, 8, "private-access"), at(2, 12, "forbidden-attribute")]
        );
        let message = &validate(code, &Policy::default_python())[0].message;
        assert!(
            message.starts_with("access to the private name `_os`"),
            "{message}"
        );
        assert_eq!(
            check("from random import _os\n"),
            vec![at(1, 20, "private-access")]
        );
        assert_eq!(
            check("import numpy._core\n"),
            vec![at(1, 14, "private-access")]
        );
    }

    #[test]
    fn private_attributes_of_user_classes_are_refused_too() {
        // The validator cannot tell `self` from a module: any `_name` is refused.
        let code = "class P:\n    def __init__(self):\n        self._x = 1\n";
        assert_eq!(check(code), vec![at(3, 14, "private-access")]);
    }

    #[test]
    fn namedtuple_methods_scipy_signal_and_safe_numpy_are_accepted() {
        let code = r#"
from collections import namedtuple
import json
import numpy as np
import scipy.signal
from scipy import signal
from scipy.constants import *
from math import *
P = namedtuple("P", "x y")
p = P(1, 2)._replace(x=3)
d = p._asdict()
w = np.lib.stride_tricks.sliding_window_view(np.arange(5), 3)
a = np.load("a.npy")
b = np.load("a.npy", mmap_mode="r", allow_pickle=False)
c = np.load("a.npy", "r", False)
m = np.memmap("m.dat", dtype=np.float64, mode="r")
config = json.load(open("/work/in/c.json"))
force = beam.load * 2
f = beam.load
s = signal.convolve(a, b)
class V:
    def __add__(self, other):
        return self
    __radd__ = __add__
"#;
        assert_eq!(check(code), vec![]);
    }

    #[test]
    fn refuses_interpreter_modules_reached_as_attributes_of_allowed_modules() {
        let code = "import statistics\nm = statistics.sys.modules[\"os\"]\n";
        assert_eq!(check(code), vec![at(2, 16, "forbidden-attribute")]);
        let code = "import dataclasses, enum\nb = dataclasses.builtins.eval(\"1\")\nc = enum.bltns\nt = dataclasses.types.FunctionType\ni = dataclasses.inspect\n";
        let expected = vec![
            at(2, 17, "forbidden-attribute"),
            at(2, 26, "forbidden-attribute"),
            at(3, 10, "forbidden-attribute"),
            at(4, 17, "forbidden-attribute"),
            at(5, 17, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_numpy_ctypeslib_and_ndarray_ctypes_however_reached() {
        let code = "import numpy as np\nimport numpy.ctypeslib\nfrom numpy import ctypeslib\nlib = np.ctypeslib.load_library(\"x\", \".\")\np = np.zeros(1).ctypes\n";
        let expected = vec![
            at(2, 14, "forbidden-attribute"),
            at(3, 19, "forbidden-attribute"),
            at(4, 10, "forbidden-attribute"),
            at(4, 20, "forbidden-attribute"),
            at(5, 17, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_numpy_distutils_f2py_testing_compat_and_imports_by_name() {
        let code = "from numpy.distutils.exec_command import exec_command\nimport numpy.f2py\n";
        let expected = vec![
            at(1, 12, "forbidden-attribute"),
            at(1, 22, "forbidden-attribute"),
            at(1, 42, "forbidden-attribute"),
            at(2, 14, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
        let code = "import numpy as np\nnp.testing.assert_allclose(1, 1)\nm = np.compat.npy_load_module(\"m\", \"/work/out/m.py\")\nnp.lookfor(\"x\", module=\"m\")\nhelp(\"m\")\n";
        let expected = vec![
            at(2, 4, "forbidden-attribute"),
            at(3, 8, "forbidden-attribute"),
            at(3, 15, "forbidden-attribute"),
            at(4, 4, "forbidden-attribute"),
            at(5, 1, "forbidden-call"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_unpickling_through_numpy_load_by_keyword_position_alias_or_unpacking() {
        let code = r#"import numpy as np
from numpy import load as L
a = np.load("a.npy", allow_pickle=True)
b = np.load("a.npy", allow_pickle=flag)
c = np.load("a.npy", None, True)
d = np.load("a.npy", **options)
f = np.load
e = L("a.npy", None, True)
g = L
h = np.lib.format.read_array(fp, True)
z = np.lib.npyio.NpzFile(fp)
"#;
        let expected = vec![
            at(3, 22, "unsafe-call"),
            at(4, 22, "unsafe-call"),
            at(5, 28, "unsafe-call"),
            at(6, 5, "unsafe-call"),
            at(7, 8, "unsafe-call"),
            at(8, 22, "unsafe-call"),
            at(9, 5, "unsafe-call"),
            at(10, 34, "unsafe-call"),
            at(11, 18, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
        // Wherever `allow_pickle` is passed, e.g. to build the keywords of a later call.
        assert_eq!(
            check("kw = dict(allow_pickle=True)\n"),
            vec![at(1, 11, "unsafe-call")]
        );
    }

    #[test]
    fn refuses_attribute_access_by_computed_name() {
        let code = "import operator, string, random\no = operator.attrgetter(\"_os.system\")(random)\nfrom operator import methodcaller\nf = string.Formatter().get_field(\"0._os\", [random], {})\n";
        // Passing the module itself is refused as well.
        let expected = vec![
            at(2, 14, "forbidden-attribute"),
            at(2, 39, "module-alias"),
            at(3, 22, "forbidden-attribute"),
            at(4, 12, "forbidden-attribute"),
            at(4, 24, "forbidden-attribute"),
            at(4, 44, "module-alias"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_the_evaluation_of_string_annotations() {
        // get_type_hints (also run by singledispatch's register) evaluates annotation strings.
        let code = "import typing\nfrom functools import singledispatch\nh = typing.get_type_hints(f)\nr = typing.ForwardRef(\"x\")\n";
        let expected = vec![
            at(2, 23, "forbidden-attribute"),
            at(3, 12, "forbidden-attribute"),
            at(4, 12, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_frames_and_code_objects_of_generators() {
        let code = "g = (x for x in ())\nb = g.gi_frame.f_builtins[\"eval\"]\nc = g.gi_code\n";
        let expected = vec![
            at(2, 7, "forbidden-attribute"),
            at(2, 16, "forbidden-attribute"),
            at(3, 7, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_a_module_used_other_than_through_its_attributes() {
        let code = "import numpy\nn = numpy\nm = [numpy][0]\nprint(numpy.pi)\n";
        assert_eq!(
            check(code),
            vec![at(2, 5, "module-alias"), at(3, 6, "module-alias")]
        );
        // A function may use a name that a later line imports.
        let code = "def f():\n    return np.load\nimport numpy as np\n";
        assert_eq!(check(code), vec![at(2, 15, "unsafe-call")]);
    }

    #[test]
    fn refuses_star_imports_except_from_plain_math_modules() {
        assert_eq!(
            check("from numpy import *\n"),
            vec![at(1, 19, "import-not-allowed")]
        );
        assert_eq!(check("from math import *\nfrom cmath import *\n"), vec![]);
    }

    #[test]
    fn refuses_numpy_arrays_over_raw_memory_and_native_callbacks() {
        let code = r#"import numpy as np
v = np.lib.stride_tricks.as_strided(a, shape=(4,), strides=(8,))
x = np.ndarray((2,), object, buf)
y = np.ndarray((2,), dtype=object, buffer=buf)
z = np.memmap("f", dtype="O")
k = np.memmap("f", dtype=[("a", "|O8")])
d = np.lib.stride_tricks.DummyArray(interface)
s = scipy.LowLevelCallable(capsule)
"#;
        let expected = vec![
            at(2, 26, "forbidden-attribute"),
            at(3, 5, "unsafe-call"),
            at(4, 5, "unsafe-call"),
            at(5, 5, "unsafe-call"),
            at(6, 5, "unsafe-call"),
            at(7, 26, "forbidden-attribute"),
            at(8, 11, "forbidden-attribute"),
        ];
        assert_eq!(check(code), expected);
    }

    #[test]
    fn refuses_dunders_that_inject_code_or_addresses_when_assigned_or_defined() {
        let code = r#"from dataclasses import dataclass
@dataclass
class A:
    x: int
    __annotations__["y=__import__('os')"] = int
class B:
    __array_interface__ = {}
class C:
    @property
    def __array_interface__(self):
        return {}
"#;
        let expected = vec![
            at(5, 5, "dunder-access"),
            at(7, 5, "dunder-access"),
            at(10, 9, "dunder-access"),
        ];
        assert_eq!(check(code), expected);
        // The same through a class built from a dict.
        let code = r#"from dataclasses import dataclass
A = dataclass(type("A", (), {"__annotations__": {"y=1": int}}))
t = type(3)
"#;
        assert_eq!(
            check(code),
            vec![at(2, 15, "unsafe-call"), at(2, 30, "dunder-access")]
        );
    }

    #[test]
    fn deeply_nested_code_is_refused_without_overflowing_the_stack() {
        let code = format!("x = {}1\n", "-".repeat(200_000));
        let small_stack = std::thread::Builder::new().stack_size(256 << 10);
        let findings = small_stack
            .spawn(move || check(&code))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(findings, vec![at(1, 1004, "syntax-error")]);
        let sum = format!("x = {}1\n", "1 + ".repeat(500));
        assert_eq!(check(&sum), vec![]);
    }

    fn with_matplotlib() -> Policy {
        let mut policy = Policy::default_python();
        policy.allowed_imports.push("matplotlib".to_string());
        policy
    }

    #[test]
    fn a_normal_matplotlib_plot_script_is_allowed() {
        let code = r#"
import json
import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import cm, colors
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.path import Path
from matplotlib.patches import PathPatch

data = np.loadtxt("inputs/data.csv", delimiter=",", skiprows=1)
x, y = data[:, 0], data[:, 1]
slope, intercept = np.polyfit(x, y, 1)
plt.style.use("ggplot")
matplotlib.rcParams["font.size"] = 9
fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 3))
ax.scatter(x, y, label="measured")
ax.plot(x, slope * x + intercept, "r-", label=f"fit {slope:.2f}")
ax.set_title("tensile test")
ax.set_xlabel("force [kN]")
ax.legend()
image = bx.imshow(np.outer(x, y), cmap=cm.viridis, norm=colors.Normalize())
fig.colorbar(image, ax=bx)
bx.add_patch(PathPatch(Path([(0, 0), (1, 1)]), fill=False))
plt.setp(ax.get_xticklabels(), rotation=45)
fig.tight_layout()
fig.savefig("/work/out/plot.png", dpi=100)
plt.figure()
plt.hist(np.random.default_rng(1).normal(size=100), bins=10)
plt.title("histogram")
plt.savefig("/work/out/hist.png")
with PdfPages("/work/out/plots.pdf") as pdf:
    pdf.savefig(fig)
plt.close("all")
print(json.dumps({"slope": float(slope)}))
"#;
        assert_eq!(check_with(code, &with_matplotlib()), vec![]);
        // The default list (a tool without one of its own) does not have matplotlib.
        assert_eq!(
            check("import matplotlib.pyplot as plt\n"),
            vec![at(1, 8, "import-not-allowed")]
        );
    }

    #[test]
    fn matplotlib_imports_by_name_and_movie_writers_are_refused() {
        let code = r#"import matplotlib.pyplot as plt
import matplotlib
plt.switch_backend("module://main")
from matplotlib.backend_bases import register_backend
import matplotlib.animation
from matplotlib.animation import FFMpegWriter
matplotlib.sphinxext.plot_directive
import matplotlib.testing
"#;
        let expected = vec![
            at(3, 5, "forbidden-attribute"),
            at(4, 38, "forbidden-attribute"),
            at(5, 19, "forbidden-attribute"),
            at(6, 17, "forbidden-attribute"),
            at(7, 12, "forbidden-attribute"),
            at(8, 19, "forbidden-attribute"),
        ];
        assert_eq!(check_with(code, &with_matplotlib()), expected);
    }

    #[test]
    fn matplotlib_paths_to_pillow_logging_frames_and_annotations_are_refused() {
        let code = r#"import matplotlib
from matplotlib import image, colors, cbook, artist
v = image.PIL.ImageShow.Viewer
c = colors.Image.open("x.png")
l = matplotlib.logging.config
f = cbook.traceback.walk_stack(None)
s = artist.Signature.from_callable(g, eval_str=True)
m = matplotlib.testing.widgets.mock
"#;
        let expected = vec![
            at(3, 11, "forbidden-attribute"),
            at(3, 15, "forbidden-attribute"),
            at(4, 12, "forbidden-attribute"),
            at(5, 16, "forbidden-attribute"),
            at(6, 11, "forbidden-attribute"),
            at(7, 12, "forbidden-attribute"),
            at(7, 22, "forbidden-attribute"),
            at(8, 16, "forbidden-attribute"),
            at(8, 32, "forbidden-attribute"),
        ];
        assert_eq!(check_with(code, &with_matplotlib()), expected);
        // What matplotlib re-exports from the refused modules is refused as before.
        let code = "import matplotlib\nmatplotlib.os.system('id')\nmatplotlib.subprocess\nimport matplotlib.pyplot as plt\nplt.importlib\n";
        let expected = vec![
            at(2, 12, "forbidden-attribute"),
            at(2, 15, "forbidden-attribute"),
            at(3, 12, "forbidden-attribute"),
            at(5, 5, "forbidden-attribute"),
        ];
        assert_eq!(check_with(code, &with_matplotlib()), expected);
    }

    #[test]
    fn the_python_tools_migration_lists_the_default_modules_and_matplotlib() {
        let sql = include_str!("../../../migrations/0007_matplotlib.sql");
        let start = sql.find("ARRAY[").expect("an ARRAY[...] list") + "ARRAY[".len();
        let end = start + sql[start..].find(']').expect("the list's end");
        let listed: Vec<String> = sql[start..end]
            .split(',')
            .map(|m| m.trim().trim_matches('\'').to_string())
            .collect();
        let mut expected: Vec<String> = DEFAULT_ALLOWED_IMPORTS
            .iter()
            .map(|m| m.to_string())
            .collect();
        expected.push("matplotlib".to_string());
        assert_eq!(listed, expected);
        assert_eq!(Policy::from_allowed(&listed).allowed_imports, expected);
    }
}
