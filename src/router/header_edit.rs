//! Header edits of a route, a virtual host or a router: `request_headers_to_add/_remove`,
//! `response_headers_to_add/_remove`, with MOSN's meaning.
//!
//! An added header's value is literal, or `%name%` for a MOSN variable (an unknown name
//! stays literal, as in MOSN). With `append` (the default) a header that already has a
//! non-empty value gets `old,new`; otherwise it is set. Adds run before removes; the route's
//! edits run first, then the virtual host's, then the router's.

use crate::config::{HeaderAddConfig, HeaderEditsConfig};
use crate::headers::{HeaderMap, HeaderMutation, HeaderOp, Mutations, Overlay, SharedStr};
use crate::variable::{RequestVars, Variable};

#[derive(Debug)]
enum Value {
    Literal(SharedStr),
    Variable(Variable),
}

#[derive(Debug)]
struct Add {
    name: SharedStr,
    value: Value,
    append: bool,
}

/// One level's edits, built once per config.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    request_add: Vec<Add>,
    request_remove: Vec<SharedStr>,
    response_add: Vec<Add>,
    response_remove: Vec<SharedStr>,
}

fn adds(c: &[HeaderAddConfig]) -> Vec<Add> {
    c.iter()
        .map(|a| {
            let var = a.value.strip_prefix('%').and_then(|v| v.strip_suffix('%')).filter(|v| !v.is_empty()).and_then(Variable::parse);
            let value = match var {
                Some(v) => Value::Variable(v),
                None => Value::Literal(a.value.as_str().into()),
            };
            Add { name: a.key.as_str().into(), value, append: a.append }
        })
        .collect()
}

/// One resolved edit: set (or append to) a header, or remove it (`value: None`).
#[derive(Debug, Clone)]
pub struct Edit {
    pub name: SharedStr,
    pub value: Option<SharedStr>,
    pub append: bool,
}

impl HeaderEdits {
    /// The edits of one level, or `None` when it has none (the common case costs nothing).
    pub(crate) fn new(c: &HeaderEditsConfig) -> Option<HeaderEdits> {
        (!c.is_empty()).then(|| HeaderEdits {
            request_add: adds(&c.request_add),
            request_remove: c.request_remove.iter().map(|h| h.as_str().into()).collect(),
            response_add: adds(&c.response_add),
            response_remove: c.response_remove.iter().map(|h| h.as_str().into()).collect(),
        })
    }

    /// The request edits with their values resolved (variables read the request).
    pub fn request(&self, vars: &RequestVars<'_>) -> impl Iterator<Item = Edit> + '_ {
        resolve(&self.request_add, &self.request_remove, vars)
    }

    /// The response edits with their values resolved now, while the request is at hand
    /// (MOSN's variables read the request); they are applied to the response later.
    pub fn response(&self, vars: &RequestVars<'_>) -> impl Iterator<Item = Edit> + '_ {
        resolve(&self.response_add, &self.response_remove, vars)
    }
}

fn resolve<'a>(adds: &'a [Add], removes: &'a [SharedStr], vars: &RequestVars<'_>) -> impl Iterator<Item = Edit> + 'a {
    let resolved: Vec<Edit> = adds
        .iter()
        .map(|a| {
            let value = match &a.value {
                Value::Literal(v) => v.clone(),
                Value::Variable(v) => {
                    v.get(vars).map(|b| SharedStr::from(String::from_utf8_lossy(b.as_ref()).as_ref())).unwrap_or_else(crate::headers::empty)
                }
            };
            Edit { name: a.name.clone(), value: Some(value), append: a.append }
        })
        .collect();
    resolved.into_iter().chain(removes.iter().map(|r| Edit { name: r.clone(), value: None, append: false }))
}

/// Applies one edit on top of `base` and the mutations so far in `out`.
pub fn apply(edit: &Edit, base: &dyn HeaderMap, out: &mut Mutations) {
    let Some(value) = &edit.value else {
        out.push(HeaderMutation { op: HeaderOp::Remove, name: edit.name.clone(), value: crate::headers::empty() });
        return;
    };
    let old = if edit.append {
        Overlay { base, mutations: out }.lookup(&edit.name).first().filter(|o| !o.is_empty()).map(<[u8]>::to_vec)
    } else {
        None
    };
    let value = match old {
        Some(old) => SharedStr::from(format!("{},{}", String::from_utf8_lossy(&old), value)),
        None => value.clone(),
    };
    out.push(HeaderMutation { op: HeaderOp::Set, name: edit.name.clone(), value });
}
