//! Reading the TOML table by table: every problem is collected with its key, the bad value and the
//! fix, unknown keys included, instead of stopping at the first.

use std::net::SocketAddr;

use toml::{Table, Value};

use super::{EnvLookup, Problem};

pub(super) fn env_or(env: EnvLookup<'_>, name: &str, file: impl FnOnce() -> String) -> String {
    // The file value is still read so its type is checked even when the env overrides it.
    let from_file = file();
    env(name).unwrap_or(from_file)
}

pub(super) fn env_int(
    env: EnvLookup<'_>,
    name: &str,
    min: u64,
    max: u64,
    p: &mut Vec<Problem>,
) -> Option<u64> {
    let v = env(name)?;
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            p.push(Problem {
                key: format!("{name} (env)"),
                value: format!("{v:?}"),
                fix: format!("must be a whole number from {min} to {max}"),
            });
            None
        }
    }
}

/// A table being read, with the dotted path used in problems (`routes[2]`, `jwt`).
pub(super) struct Sec<'t> {
    pub(super) path: String,
    pub(super) t: &'t Table,
}

static EMPTY: std::sync::LazyLock<Table> = std::sync::LazyLock::new(Table::new);

impl<'t> Sec<'t> {
    pub(super) fn root(t: &'t Table) -> Self {
        Sec {
            path: String::new(),
            t,
        }
    }

    pub(super) fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn problem(
        &self,
        key: &str,
        value: impl Into<String>,
        fix: impl Into<String>,
    ) -> Problem {
        Problem {
            key: self.key(key),
            value: value.into(),
            fix: fix.into(),
        }
    }

    pub(super) fn only_keys(&self, known: &[&str], p: &mut Vec<Problem>) {
        for k in self.t.keys() {
            if !known.contains(&k.as_str()) {
                let closest = known
                    .iter()
                    .min_by_key(|c| edit_distance(c, k))
                    .filter(|c| edit_distance(c, k) <= 3);
                let hint = closest
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                // A misspelt secret (`secrte = "…"`) must not reach the log or a reload's
                // answer: the value of a key that looks like one, or is closest to one, is
                // not shown.
                let secretish = |name: &str| {
                    let name = name.to_ascii_lowercase();
                    ["secret", "key", "pass", "token"]
                        .iter()
                        .any(|w| name.contains(w))
                };
                let shown = match &self.t[k] {
                    Value::String(_) if secretish(k) || closest.is_some_and(|c| secretish(c)) => {
                        "(hidden: it may be a secret)".to_string()
                    }
                    other => render(other),
                };
                p.push(self.problem(
                    k,
                    shown,
                    format!("unknown key{hint}; known keys here: {}", known.join(", ")),
                ));
            }
        }
    }

    pub(super) fn table(&self, key: &str, p: &mut Vec<Problem>) -> Sec<'t> {
        let path = self.key(key);
        match self.t.get(key) {
            None => Sec { path, t: &EMPTY },
            Some(Value::Table(t)) => Sec { path, t },
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a table: write it as [{path}]"),
                ));
                Sec { path, t: &EMPTY }
            }
        }
    }

    pub(super) fn array_of_tables(&self, key: &str, p: &mut Vec<Problem>) -> Vec<Sec<'t>> {
        match self.t.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Table(t) => Some(Sec {
                        path: format!("{}[{i}]", self.key(key)),
                        t,
                    }),
                    other => {
                        p.push(self.problem(
                            &format!("{key}[{i}]"),
                            render(other),
                            format!("must be a table: write each entry as [[{key}]]"),
                        ));
                        None
                    }
                })
                .collect(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a list of tables: write each as [[{key}]]"),
                ));
                Vec::new()
            }
        }
    }

    pub(super) fn string(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> String {
        match self.t.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a string, e.g. {default:?}"),
                ));
                default.to_string()
            }
        }
    }

    pub(super) fn nonempty_string(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> String {
        let v = self.string(key, default, p);
        if v.is_empty() {
            let shown = if self.t.contains_key(key) {
                "\"\""
            } else {
                "(missing)"
            };
            p.push(self.problem(key, shown, "must be a non-empty string"));
        }
        v
    }

    pub(super) fn int(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
        p: &mut Vec<Problem>,
    ) -> u64 {
        match self.t.get(key) {
            None => default,
            Some(Value::Integer(n))
                if (*n as i128) >= min as i128 && (*n as i128) <= max as i128 =>
            {
                *n as u64
            }
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a whole number from {min} to {max} (default {default})"),
                ));
                default
            }
        }
    }

    pub(super) fn bool(&self, key: &str, default: bool, p: &mut Vec<Problem>) -> bool {
        match self.t.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be true or false (default {default})"),
                ));
                default
            }
        }
    }

    pub(super) fn strings(&self, key: &str, default: &[&str], p: &mut Vec<Problem>) -> Vec<String> {
        match self.t.get(key) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        p.push(self.problem(key, render(other), "every entry must be a string"));
                        None
                    }
                })
                .collect(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    "must be a list of strings, e.g. [\"a\", \"b\"]",
                ));
                Vec::new()
            }
        }
    }

    pub(super) fn socket_addr(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> SocketAddr {
        let v = self.string(key, default, p);
        v.parse().unwrap_or_else(|_| {
            p.push(self.problem(
                key,
                format!("{v:?}"),
                format!("must be \"ip:port\", e.g. {default:?}"),
            ));
            default.parse().expect("defaults are valid")
        })
    }
}

pub(super) fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `key`, or the environment variable `key_env` names (not both).
pub(super) fn value_or_env(
    s: &Sec<'_>,
    key: &str,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> String {
    let env_key = format!("{key}_env");
    let var = s.string(&env_key, "", p);
    if var.is_empty() {
        return s.string(key, "", p);
    }
    if s.t.contains_key(key) {
        p.push(s.problem(key, "(set)", format!("set {key} or {env_key}, not both")));
    }
    env(&var).unwrap_or_else(|| {
        p.push(s.problem(
            &env_key,
            format!("{var:?}"),
            format!("the environment variable {var} is not set"),
        ));
        String::new()
    })
}
