//! Whether a recorded response's content coding may be replayed to a request, by its
//! `Accept-Encoding` (RFC 9110 §12.5.3). A retry usually sends what its first request
//! sent; one that does not accept the recorded coding gets 406
//! [`EncodingNotAcceptable`](crate::Problem::EncodingNotAcceptable) rather than bytes it
//! cannot read. The layer does not decode the recorded body for it: the recorded
//! representation's `ETag`, `Content-Length` and `Digest` belong to the encoded bytes,
//! and a decoder for every coding a handler may use (gzip, br, zstd, deflate...) is not
//! the layer's to carry. Put compression outside the layer instead: the record is then
//! the plain body, compressed anew for each request as it accepts.

use http::HeaderValue;

/// Whether every content coding of `content_encoding` (a recorded `Content-Encoding`
/// value, such as `gzip` or `gzip, br`) is acceptable to a request whose
/// `Accept-Encoding` field lines are `accept`. No field line accepts any coding; an
/// empty one only `identity`. Malformed members are ignored, never refused.
pub(crate) fn acceptable(accept: &[HeaderValue], content_encoding: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    let members: Vec<(&str, bool)> = accept
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(member)
        .collect();
    let accepts = |coding: &str| {
        let named = members
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(coding) || aliased(name, coding));
        match named {
            Some(&(_, accepted)) => accepted,
            None => members
                .iter()
                .any(|&(name, accepted)| name == "*" && accepted),
        }
    };
    content_encoding
        .split(',')
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .all(accepts)
}

/// One member of `Accept-Encoding`: its coding and whether its weight is above 0;
/// `None` if it is malformed or empty.
fn member(member: &str) -> Option<(&str, bool)> {
    let mut parts = member.split(';').map(str::trim);
    let coding = parts.next().filter(|coding| !coding.is_empty())?;
    let mut accepted = true;
    for parameter in parts {
        let (name, value) = parameter.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            let weight: f32 = value.trim().parse().ok()?;
            if !(0.0..=1.0).contains(&weight) {
                return None;
            }
            accepted = weight > 0.0;
        }
    }
    Some((coding, accepted))
}

/// `x-gzip` is `gzip` (RFC 9110 §8.4.1.3).
fn aliased(name: &str, coding: &str) -> bool {
    let gzip = |c: &str| c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip");
    gzip(name) && gzip(coding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(lines: &[&str], coding: &str) -> bool {
        let lines: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_str(l).unwrap())
            .collect();
        acceptable(&lines, coding)
    }

    #[test]
    fn a_coding_is_replayed_only_where_accept_encoding_allows_it() {
        // No Accept-Encoding: any coding.
        assert!(accepts(&[], "gzip"));
        assert!(accepts(&["gzip, deflate, br"], "gzip"));
        assert!(accepts(&["deflate", "GZIP;q=0.5"], "gzip"));
        assert!(accepts(&["x-gzip"], "gzip"));
        assert!(accepts(&["*"], "br"));
        assert!(accepts(&["gzip, br"], "gzip, br"));
        assert!(accepts(&["identity"], "identity"));
        assert!(accepts(&[""], ""));
        // Refused: not listed, weight 0, excluded from `*`, one of two codings, an
        // empty field line (identity only).
        assert!(!accepts(&["br"], "gzip"));
        assert!(!accepts(&["gzip;q=0"], "gzip"));
        assert!(!accepts(&["*, gzip;q=0.000"], "gzip"));
        assert!(!accepts(&["*;q=0"], "gzip"));
        assert!(!accepts(&["gzip"], "gzip, br"));
        assert!(!accepts(&[""], "gzip"));
        assert!(!accepts(&["identity"], "gzip"));
        // Malformed members are ignored, never a panic.
        assert!(!accepts(&["gzip;q=2", "gzip;q=x", ";;", "gzip;q"], "gzip"));
        assert!(accepts(&["gzip;q=x, br;q=0.1"], "br"));
    }
}
