//! A call's namespace: the name its records are kept under.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The name a call's records are kept under: a function's name (`module::function`),
/// unique per function, since two functions with one namespace share their keys.
///
/// [`Call::new`](crate::Call::new) takes anything that turns into one: a `&str`,
/// `String`, `&String`, `Arc<str>`, `Box<str>` or `Cow<'static, str>`. A name known for
/// the whole program is borrowed, never copied, through [`Namespace::fixed`] (what
/// `#[idempotent]` passes) or a `Cow::Borrowed`; an `Arc<str>` is shared, not copied;
/// any other is copied once, when the call is built. The engine then shares it (its
/// context, its events) without copying it again.
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
#[derive(Clone)]
pub struct Namespace(Name);

#[derive(Clone)]
enum Name {
    Fixed(&'static str),
    Shared(Arc<str>),
}

impl Namespace {
    /// A name known for the whole program, borrowed, never copied.
    pub const fn fixed(name: &'static str) -> Namespace {
        Namespace(Name::Fixed(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Fixed(name) => name,
            Name::Shared(name) => name,
        }
    }

    /// The name as a metrics label, shared without a copy.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(&self) -> metrics::SharedString {
        match &self.0 {
            Name::Fixed(name) => metrics::SharedString::const_str(name),
            Name::Shared(name) => metrics::SharedString::from_shared(name.clone()),
        }
    }
}

impl Deref for Namespace {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Namespace) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Namespace {}

impl std::hash::Hash for Namespace {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Copied once.
impl From<&str> for Namespace {
    fn from(name: &str) -> Namespace {
        Namespace(Name::Shared(name.into()))
    }
}

/// Copied once.
impl From<&String> for Namespace {
    fn from(name: &String) -> Namespace {
        Namespace(Name::Shared(name.as_str().into()))
    }
}

/// Copied once.
impl From<String> for Namespace {
    fn from(name: String) -> Namespace {
        Namespace(Name::Shared(name.into()))
    }
}

/// Copied once.
impl From<Box<str>> for Namespace {
    fn from(name: Box<str>) -> Namespace {
        Namespace(Name::Shared(name.into()))
    }
}

/// Shared, not copied.
impl From<Arc<str>> for Namespace {
    fn from(name: Arc<str>) -> Namespace {
        Namespace(Name::Shared(name))
    }
}

/// Shared, not copied.
impl From<&Arc<str>> for Namespace {
    fn from(name: &Arc<str>) -> Namespace {
        Namespace(Name::Shared(name.clone()))
    }
}

/// Borrowed stays borrowed; owned is copied once.
impl From<Cow<'static, str>> for Namespace {
    fn from(name: Cow<'static, str>) -> Namespace {
        match name {
            Cow::Borrowed(name) => Namespace::fixed(name),
            Cow::Owned(name) => name.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_name_is_borrowed_an_arc_shared_and_a_runtime_one_copied_once() {
        static NAME: &str = "orders::create";
        let fixed = Namespace::fixed(NAME);
        assert!(std::ptr::eq(fixed.as_str(), NAME), "borrowed");
        assert!(
            std::ptr::eq(fixed.clone().as_str(), NAME),
            "clones borrow too"
        );
        let shared: Arc<str> = Arc::from(NAME);
        let from_arc = Namespace::from(shared.clone());
        assert!(
            std::ptr::eq(from_arc.as_str(), &*shared),
            "an Arc is shared"
        );
        let runtime = String::from("orders::create");
        for namespace in [
            Namespace::from(runtime.as_str()),
            Namespace::from(&runtime),
            Namespace::from(runtime.clone()),
            Namespace::from(Box::<str>::from(NAME)),
            Namespace::from(Cow::<'static, str>::Owned(runtime.clone())),
        ] {
            assert_eq!(namespace.as_str(), NAME);
            assert!(
                !std::ptr::eq(namespace.as_str(), runtime.as_str()),
                "copied"
            );
            let clone = namespace.clone();
            assert!(
                std::ptr::eq(clone.as_str(), namespace.as_str()),
                "clones share"
            );
        }
        assert_eq!(Namespace::fixed(NAME), Namespace::from(NAME));
        assert!(matches!(
            Namespace::from(Cow::Borrowed(NAME)).0,
            Name::Fixed(name) if std::ptr::eq(name, NAME)
        ));
    }
}
