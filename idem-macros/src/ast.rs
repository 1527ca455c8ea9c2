//! Step 1, parse: the attribute's options as written, each value checked on its own
//! (a duration literal, a name). Whether the options fit together and fit the function
//! is the validate step's (`valid.rs`).

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{parenthesized, Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token, Type};

/// The options, in the order the user may write them.
const OPTIONS: &str = "key, engine, ttl, lease, max_duration, name, fingerprint, wait, \
                       replay_errors, optional_key, report, transaction, crate";

/// A duration option: a literal checked now, or an expression of type `Duration`.
pub enum DurationArg {
    Literal(Duration, Span),
    Expr(Box<Expr>),
}

/// `transaction(tx: PgTransaction)`: the body runs in a transaction of the store's,
/// bound as `tx` (a `&mut PgTransaction`) in the body.
pub struct TransactionArg {
    pub binding: Ident,
    pub ty: Type,
}

/// The attribute's options as written. `key` is required, which validation checks.
#[derive(Default)]
pub struct Options {
    /// `key` was written, even if its value was wrong (then that error says enough).
    pub key_written: bool,
    pub key: Option<Expr>,
    pub engine: Option<Expr>,
    pub ttl: Option<DurationArg>,
    pub lease: Option<DurationArg>,
    pub max_duration: Option<DurationArg>,
    pub name: Option<LitStr>,
    pub fingerprint: Option<Expr>,
    pub wait: Option<DurationArg>,
    pub replay_errors: Option<Expr>,
    pub optional_key: Option<LitBool>,
    pub report: Option<LitBool>,
    pub transaction: Option<TransactionArg>,
    pub krate: Option<Path>,
    /// Where the options stand, for an error about one that is missing.
    pub span: Option<Span>,
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut parsed = Options {
            span: Some(input.span()),
            ..Options::default()
        };
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
        match errors {
            Some(errors) => Err(errors),
            None => Ok(parsed),
        }
    }
}

fn parse_option(input: ParseStream, parsed: &mut Options) -> syn::Result<()> {
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
        "optional_key" => set(
            &mut parsed.optional_key,
            bool_value(input, &name)?,
            duplicate,
        ),
        "report" => set(&mut parsed.report, bool_value(input, &name)?, duplicate),
        "transaction" => set(
            &mut parsed.transaction,
            transaction_value(input, &name)?,
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

fn bool_value(input: ParseStream, name: &Ident) -> syn::Result<LitBool> {
    eq(input, name, &format!("{name} = true"))?;
    input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format!("`{name}` takes `true` or `false`")))
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

fn transaction_value(input: ParseStream, name: &Ident) -> syn::Result<TransactionArg> {
    let form = || {
        syn::Error::new(
            name.span(),
            "`transaction` names the body's transaction and its type: write \
             `transaction(tx: PgTransaction)`, then use `tx` (a `&mut PgTransaction`) in the body",
        )
    };
    if !input.peek(syn::token::Paren) {
        return Err(form());
    }
    let inside;
    parenthesized!(inside in input);
    let binding: Ident = inside.parse().map_err(|_| form())?;
    inside.parse::<Token![:]>().map_err(|_| form())?;
    let ty: Type = inside.parse().map_err(|_| form())?;
    if !inside.is_empty() {
        return Err(form());
    }
    Ok(TransactionArg { binding, ty })
}
