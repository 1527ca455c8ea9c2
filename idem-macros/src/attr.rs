//! Parsing and checking the attribute's options.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

/// The options, in the order the user may write them.
const OPTIONS: &str =
    "key, engine, ttl, lease, max_duration, name, fingerprint, wait, replay_errors, crate";

/// A duration option: a literal checked now, or an expression of type `Duration`.
pub enum DurationArg {
    Literal(Duration, Span),
    Expr(Box<Expr>),
}

/// The attribute's options, checked.
pub struct Args {
    pub key: Expr,
    pub engine: Option<Expr>,
    pub ttl: Option<DurationArg>,
    pub lease: Option<DurationArg>,
    pub max_duration: Option<DurationArg>,
    pub name: Option<LitStr>,
    pub fingerprint: Option<Expr>,
    pub wait: Option<DurationArg>,
    pub replay_errors: Option<Expr>,
    pub krate: Option<Path>,
}

/// Every option as parsed, before the check for `key`.
#[derive(Default)]
struct Parsed {
    /// `key` was written, even if its value was wrong (then that error says enough).
    key_written: bool,
    key: Option<Expr>,
    engine: Option<Expr>,
    ttl: Option<DurationArg>,
    lease: Option<DurationArg>,
    max_duration: Option<DurationArg>,
    name: Option<LitStr>,
    fingerprint: Option<Expr>,
    wait: Option<DurationArg>,
    replay_errors: Option<Expr>,
    krate: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let span = input.span();
        let mut parsed = Parsed::default();
        let mut errors: Option<syn::Error> = None;
        while !input.is_empty() {
            if let Err(error) = parse_option(input, &mut parsed) {
                match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                }
                // Skip to the next option, so every mistake is reported at once.
                while !input.is_empty() && !input.peek(Token![,]) {
                    input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let key = match parsed.key {
            Some(key) => Some(key),
            None if parsed.key_written => None,
            None => {
                let missing = syn::Error::new(
                    span,
                    "#[idempotent] needs `key = ...`: the value that tells one event from another, \
                     e.g. `#[idempotent(key = event.request_id)]`",
                );
                match &mut errors {
                    Some(all) => all.combine(missing),
                    None => errors = Some(missing),
                }
                None
            }
        };
        let key = match (key, errors) {
            (Some(key), None) => key,
            (_, Some(errors)) => return Err(errors),
            // `key` was written without a value, which reported an error above.
            (None, None) => return Err(syn::Error::new(span, "`key` needs a value")),
        };
        Ok(Args {
            key,
            engine: parsed.engine,
            ttl: parsed.ttl,
            lease: parsed.lease,
            max_duration: parsed.max_duration,
            name: parsed.name,
            fingerprint: parsed.fingerprint,
            wait: parsed.wait,
            replay_errors: parsed.replay_errors,
            krate: parsed.krate,
        })
    }
}

fn parse_option(input: ParseStream, parsed: &mut Parsed) -> syn::Result<()> {
    let name: Ident = if input.peek(Token![crate]) {
        let token: Token![crate] = input.parse()?;
        Ident::new("crate", token.span)
    } else {
        input.parse().map_err(|_| {
            syn::Error::new(
                input.span(),
                format!("expected an option of #[idempotent]: one of {OPTIONS}"),
            )
        })?
    };
    let option = name.to_string();
    let duplicate = || {
        syn::Error::new(
            name.span(),
            format!("duplicate option `{option}`: give it once"),
        )
    };
    match option.as_str() {
        "key" => {
            parsed.key_written = true;
            let key = expr_value(input, &name, "key = event.request_id")?;
            set(&mut parsed.key, key, duplicate)
        }
        "engine" => set(
            &mut parsed.engine,
            expr_value(input, &name, "engine = ENGINE")?,
            duplicate,
        ),
        "fingerprint" => set(
            &mut parsed.fingerprint,
            expr_value(input, &name, "fingerprint = event.body")?,
            duplicate,
        ),
        "replay_errors" => set(
            &mut parsed.replay_errors,
            expr_value(input, &name, "replay_errors = MyError::is_permanent")?,
            duplicate,
        ),
        "ttl" => set(
            &mut parsed.ttl,
            duration_value(input, &name, "ttl = \"24h\"")?,
            duplicate,
        ),
        "lease" => set(
            &mut parsed.lease,
            duration_value(input, &name, "lease = \"30s\"")?,
            duplicate,
        ),
        "max_duration" => set(
            &mut parsed.max_duration,
            duration_value(input, &name, "max_duration = \"15m\"")?,
            duplicate,
        ),
        "wait" => set(
            &mut parsed.wait,
            duration_value(input, &name, "wait = \"30s\"")?,
            duplicate,
        ),
        "name" => {
            let value = name_value(input, &name)?;
            set(&mut parsed.name, value, duplicate)
        }
        "crate" => {
            eq(input, &name, "crate = my_reexport::idem")?;
            let path = if input.peek(LitStr) {
                input.parse::<LitStr>()?.parse::<Path>()?
            } else {
                Path::parse_mod_style(input)?
            };
            set(&mut parsed.krate, path, duplicate)
        }
        _ => Err(syn::Error::new(
            name.span(),
            format!("unknown option `{option}` of #[idempotent]; the options are: {OPTIONS}"),
        )),
    }
}

fn set<T>(slot: &mut Option<T>, value: T, duplicate: impl Fn() -> syn::Error) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

/// The `=` after an option's name; its absence names the form to write.
fn eq(input: ParseStream, name: &Ident, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new(
                name.span(),
                format!("`{name} =` needs a value: write `{example}`"),
            ));
        }
        Ok(())
    } else {
        Err(syn::Error::new(
            name.span(),
            format!("`{name}` needs a value: write `{example}`"),
        ))
    }
}

fn expr_value(input: ParseStream, name: &Ident, example: &str) -> syn::Result<Expr> {
    eq(input, name, example)?;
    input.parse()
}

fn duration_value(input: ParseStream, name: &Ident, example: &str) -> syn::Result<DurationArg> {
    eq(input, name, example)?;
    match input.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => match humantime::parse_duration(&literal.value()) {
            Ok(duration) if duration.is_zero() => Err(syn::Error::new(
                literal.span(),
                format!("`{name}` must be longer than zero"),
            )),
            Ok(duration) => Ok(DurationArg::Literal(duration, literal.span())),
            Err(error) => Err(syn::Error::new(
                literal.span(),
                format!(
                    "`{}` is not a duration ({error}); write a number and a unit, such as \"500ms\", \"30s\", \"15m\", \"24h\" or \"7days\"",
                    literal.value()
                ),
            )),
        },
        Expr::Lit(other) => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes a duration string such as \"30s\", or a `std::time::Duration` expression"),
        )),
        expr => Ok(DurationArg::Expr(Box::new(expr))),
    }
}

fn name_value(input: ParseStream, name: &Ident) -> syn::Result<LitStr> {
    eq(input, name, "name = \"orders::create\"")?;
    let literal: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "`name` takes a string literal, such as `name = \"orders::create\"`",
        )
    })?;
    let value = literal.value();
    if value.is_empty() {
        return Err(syn::Error::new(literal.span(), "`name` must not be empty"));
    }
    if value.contains('#') {
        return Err(syn::Error::new(
            literal.span(),
            "`name` must not contain `#`, which separates the name from the key's digest in a record id",
        ));
    }
    Ok(literal)
}
