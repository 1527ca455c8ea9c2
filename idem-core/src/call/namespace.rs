//! A call's namespace: the name its records are kept under.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The name a call's records are kept under: a function's name (`module::function`),
/// unique per function, since two functions with one namespace share their keys.
///
/// [`Call::new`](super::Call::new) takes anything that turns into one: a `&str`,
/// `String`, `&String`, `Arc<str>`, `Box<str>` or `Cow<'static, str>`. A name known for
/// the whole program is borrowed, never copied, through [`Namespace::fixed`] (what
/// `#[idempotent]` passes) or a `Cow::Borrowed`; any other is copied once, when the
/// call is built.
///
/// ```
/// use std::sync::Arc;
/// use idem_core::{Call, Namespace};
///
/// const ORDERS: Namespace = Namespace::fixed("orders::create");
/// let tenant = String::from("tenant-7");
/// let per_tenant: Arc<str> = format!("orders::create::{tenant}").into();
/// let _ = Call::new(ORDERS, "req-1");
/// let _ = Call::new(per_tenant.clone(), "req-1");
/// let _ = Call::new(&*per_tenant, "req-1");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Namespace(Cow<'static, str>);

impl Namespace {
    /// A name known for the whole program, borrowed, never copied.
    pub const fn fixed(name: &'static str) -> Namespace {
        Namespace(Cow::Borrowed(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_cow(self) -> Cow<'static, str> {
        self.0
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Copied once.
impl From<&str> for Namespace {
    fn from(name: &str) -> Namespace {
        Namespace(Cow::Owned(name.to_owned()))
    }
}

/// Copied once.
impl From<&String> for Namespace {
    fn from(name: &String) -> Namespace {
        Namespace(Cow::Owned(name.clone()))
    }
}

/// Moved, not copied.
impl From<String> for Namespace {
    fn from(name: String) -> Namespace {
        Namespace(Cow::Owned(name))
    }
}

/// Moved, not copied.
impl From<Box<str>> for Namespace {
    fn from(name: Box<str>) -> Namespace {
        Namespace(Cow::Owned(name.into_string()))
    }
}

/// Copied once.
impl From<Arc<str>> for Namespace {
    fn from(name: Arc<str>) -> Namespace {
        Namespace(Cow::Owned(name.as_ref().to_owned()))
    }
}

/// Copied once.
impl From<&Arc<str>> for Namespace {
    fn from(name: &Arc<str>) -> Namespace {
        Namespace(Cow::Owned(name.as_ref().to_owned()))
    }
}

/// Borrowed stays borrowed; owned is moved.
impl From<Cow<'static, str>> for Namespace {
    fn from(name: Cow<'static, str>) -> Namespace {
        Namespace(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_name_is_borrowed_and_a_runtime_one_is_owned() {
        static NAME: &str = "orders::create";
        let fixed = Namespace::fixed(NAME).into_cow();
        assert!(matches!(fixed, Cow::Borrowed(name) if std::ptr::eq(name, NAME)));
        let runtime = String::from("orders::create");
        for namespace in [
            Namespace::from(runtime.as_str()),
            Namespace::from(&runtime),
            Namespace::from(runtime.clone()),
            Namespace::from(Arc::<str>::from(NAME)),
            Namespace::from(Box::<str>::from(NAME)),
        ] {
            assert_eq!(namespace.as_str(), NAME);
            assert!(matches!(namespace.into_cow(), Cow::Owned(_)));
        }
        assert_eq!(Namespace::fixed(NAME), Namespace::from(NAME));
    }
}
