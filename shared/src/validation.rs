//! Static validation of submitted Python code, before anything runs.
//!
//! The code is parsed with the real Python grammar (`rustpython-parser`) and the whole syntax tree
//! is walked. Each [`Finding`] names a rule and the exact 1-based line and column of the offending
//! node, so the user learns early and precisely why the code is refused. The sandbox remains the
//! security boundary: this pass catches the obvious escape routes, it does not prove safety.
//!
//! Rules (the `rule` strings are part of the API):
//! - `syntax-error`: the code does not parse (the only finding then) or is nested too deeply;
//! - `import-not-allowed`: an import whose top-level module is not allowed, or a relative import;
//! - `forbidden-call`: a reference to one of [`FORBIDDEN_NAMES`];
//! - `dunder-access`: an attribute whose name starts and ends with `__`, or one of
//!   [`FORBIDDEN_DUNDER_NAMES`] used as a bare name.
//!
//! Python folds identifiers with NFKC (`ｅval` is `eval`); identifiers are folded to ASCII for the
//! usual compatibility characters (full-width, mathematical letters, ligatures, long s) first.

use std::borrow::Cow;
use std::convert::Infallible;

use rustpython_parser::ast::{self, fold, Fold, Ranged};
use rustpython_parser::source_code::RandomLocator;
use rustpython_parser::text_size::{TextRange, TextSize};
use rustpython_parser::Parse;

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
/// `open` is allowed: jobs write their outputs to `/work/out`.
#[rustfmt::skip]
pub const FORBIDDEN_NAMES: &[&str] = &[
    "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "breakpoint", "input", "memoryview",
];

/// Dunder names refused as bare names (`__name__` stays allowed).
pub const FORBIDDEN_DUNDER_NAMES: &[&str] = &["__builtins__", "__loader__", "__spec__"];

/// Dunder attributes ordinary scientific code uses and that open no escape route
/// (`super().__init__()`, `np.__version__`, `f.__name__`, `f.__doc__`).
pub const ALLOWED_DUNDER_ATTRIBUTES: &[&str] = &["__init__", "__name__", "__doc__", "__version__"];

/// Deepest statement/expression/pattern nesting walked; deeper code is refused as a syntax error.
const MAX_DEPTH: usize = 1_000;

/// Stack of the validation thread: a base for the walk (at most [`MAX_DEPTH`] levels), plus room
/// for the parser and the tree's drop, whose recursion is bounded by the code length (each nesting
/// level takes at least one byte, e.g. `---…-1`). Untouched stack pages cost no memory.
const STACK_BASE: usize = 16 << 20;
const STACK_PER_CODE_BYTE: usize = 512;

/// How many allowed modules an `import-not-allowed` message lists before truncating.
const LISTED_MODULES: usize = 12;

/// One reason the code is refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// 1-based line of the offending node.
    pub line: u32,
    /// 1-based column of the offending node, counted in characters.
    pub column: u32,
    /// The rule violated: `syntax-error`, `import-not-allowed`, `forbidden-call`, `dunder-access`.
    pub rule: String,
    /// A short human explanation.
    pub message: String,
}

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
    };
    match checker.fold(suite) {
        Ok(_) => {}
        Err(never) => match never {},
    }
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

    fn check_dunder_attribute(&mut self, offset: TextSize, name: &str) {
        if is_dunder(&fold_identifier(name)) {
            let message = format!("access to {} is not allowed", shown(name));
            self.report(offset, "dunder-access", message);
        }
    }

    fn check_stmt(&mut self, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::Import(import) => {
                for alias in &import.names {
                    self.check_module(alias.range.start(), alias.name.as_str());
                }
            }
            ast::Stmt::ImportFrom(import) => {
                let level = import.level.as_ref().map_or(0, |l| l.to_u32());
                match (&import.module, level) {
                    (Some(module), 0) => {
                        let top = top_level(module.as_str());
                        let offset = self.find_in(import.range, top, false);
                        self.check_module(offset, module.as_str());
                    }
                    _ => {
                        let message = "relative import is not allowed".to_string();
                        self.report(import.range.start(), "import-not-allowed", message);
                    }
                }
                for alias in &import.names {
                    self.check_dunder_attribute(alias.range.start(), alias.name.as_str());
                }
            }
            _ => {}
        }
    }

    fn check_expr(&mut self, expr: &ast::Expr) {
        match expr {
            ast::Expr::Name(name) => {
                let id = fold_identifier(name.id.as_str());
                let loaded = !matches!(name.ctx, ast::ExprContext::Store);
                if loaded && FORBIDDEN_NAMES.contains(&id.as_ref()) {
                    let message = format!("{} is not allowed", shown(name.id.as_str()));
                    self.report(name.range.start(), "forbidden-call", message);
                } else if FORBIDDEN_DUNDER_NAMES.contains(&id.as_ref()) {
                    let message = format!("access to {} is not allowed", shown(name.id.as_str()));
                    self.report(name.range.start(), "dunder-access", message);
                }
            }
            ast::Expr::Attribute(attribute) => {
                let attr = attribute.attr.as_str();
                let offset = self.find_in(attribute.range, attr, true);
                self.check_dunder_attribute(offset, attr);
            }
            _ => {}
        }
    }

    fn check_pattern(&mut self, pattern: &ast::Pattern) {
        // `case C(__class__=c)` reads the attribute `__class__` of the subject.
        if let ast::Pattern::MatchClass(class) = pattern {
            for (attr, sub) in class.kwd_attrs.iter().zip(&class.kwd_patterns) {
                let before = TextRange::new(class.range.start(), sub.range().start());
                let offset = self.find_in(before, attr.as_str(), true);
                self.check_dunder_attribute(offset, attr.as_str());
            }
        }
    }

    /// Runs `walk` one level deeper, or refuses the node once the nesting limit is reached.
    fn nested<T>(&mut self, node: T, start: TextSize, walk: fn(&mut Self, T) -> T) -> T {
        if self.depth >= MAX_DEPTH {
            if !self.too_deep {
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
}
