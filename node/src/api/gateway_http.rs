//! The gateway's HTTP pieces, pure: `Range` headers, media types from names, percent-decoding
//! of path components and the HTML of a directory listing.

use warren_protocol::{Directory, EntryKind};

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeAsk {
    /// No header, or one this gateway answers with the whole file (several ranges, other units).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Nothing of the file satisfies it (416).
    Unsatisfiable,
}

/// Parses a `Range` header (RFC 9110 §14.1.2): one range `a-b`, `a-` or `-n` is served;
/// several ranges or another unit get the whole file (the RFC allows ignoring the header).
pub(super) fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = if a.is_empty() {
        // The last `b` bytes.
        match b.parse::<u64>() {
            Ok(0) | Err(_) => None,
            Ok(n) => Some((size.saturating_sub(n), size.checked_sub(1))),
        }
    } else {
        match (a.parse::<u64>(), b) {
            (Ok(start), "") => Some((start, size.checked_sub(1))),
            (Ok(start), b) => match b.parse::<u64>() {
                Ok(end) if end >= start => {
                    Some((start, size.checked_sub(1).map(|last| end.min(last))))
                }
                _ => None,
            },
            _ => None,
        }
    };
    match parsed {
        Some((start, Some(end))) if start <= end => RangeAsk::Part { start, end },
        _ => RangeAsk::Unsatisfiable,
    }
}

/// The media type of a file named `name`, from its extension.
pub(super) fn media_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "flac" => "audio/flac",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "ogv" => "video/ogg",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A URL path component with its `%XX` escapes decoded, if it is UTF-8 afterwards.
pub(super) fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A name escaped for a URL path component (everything but unreserved characters).
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text escaped for HTML.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML listing of `dir`, shown at `url_path` (which ends in `/`): relative links.
pub(super) fn listing_html(url_path: &str, dir: &Directory) -> String {
    let title = html_escape(url_path);
    let mut rows = String::new();
    for e in &dir.entries {
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        rows.push_str(&format!(
            "<tr><td><a href=\"./{href}{slash}\">{name}{slash}</a></td><td>{size}</td></tr>\n",
            href = percent_encode(&e.name),
            name = html_escape(&e.name),
            size = e.size,
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n<table><tr><th>name</th><th>bytes</th></tr>\n\
         <tr><td><a href=\"../\">../</a></td><td></td></tr>\n{rows}</table></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            Part { start: 0, end: 3 }
        );
        assert_eq!(parse_range(Some("bytes=4-"), 10), Part { start: 4, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-99"), 10),
            Part { start: 5, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
    }

    #[test]
    fn media_types_and_escapes() {
        assert_eq!(media_type_of("a.PNG"), "image/png");
        assert_eq!(media_type_of("index.html"), "text/html; charset=utf-8");
        assert_eq!(media_type_of("noext"), "application/octet-stream");
        assert_eq!(percent_decode("caf%C3%A9%20x").as_deref(), Some("café x"));
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_encode("café x"), "caf%C3%A9%20x");
        assert_eq!(
            html_escape("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
