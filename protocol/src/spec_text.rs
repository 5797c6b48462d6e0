//! Test vectors embedded in the `spec/` pages, read back out so tests can check the code against
//! the pages.
//!
//! A vector is a marker line `<!-- vector: NAME -->` (or `<!-- vector: NAME error: Kind -->` for
//! input that must be refused with that error kind) followed by a fenced ```` ```hex ```` block.
//! Inside the block whitespace is ignored and `#` starts a comment, so a vector can be laid out
//! and annotated item by item. Pure text processing: no I/O.

/// One vector from a spec page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecVector {
    /// Its name, unique on the page.
    pub name: String,
    /// `Some(kind)` for a vector that must be refused with that error kind.
    pub error: Option<String>,
    /// The bytes of the hex block.
    pub bytes: Vec<u8>,
}

/// Every vector on `page`, in page order. Errors name the offending vector or marker.
pub fn extract_vectors(page: &str) -> Result<Vec<SpecVector>, String> {
    let mut out: Vec<SpecVector> = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- vector:")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        let mut words = marker.split_whitespace();
        let name = words
            .next()
            .ok_or_else(|| format!("vector marker without a name: {line:?}"))?
            .to_owned();
        let error = match (words.next(), words.next(), words.next()) {
            (None, _, _) => None,
            (Some("error:"), Some(kind), None) => Some(kind.to_owned()),
            _ => return Err(format!("bad vector marker {line:?}")),
        };
        if lines.next().map(str::trim) != Some("```hex") {
            return Err(format!(
                "vector {name}: the marker must be followed by a ```hex block"
            ));
        }
        let mut hex_text = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line.trim() == "```" {
                closed = true;
                break;
            }
            let code = line.split('#').next().unwrap_or("");
            hex_text.extend(code.chars().filter(|c| !c.is_whitespace()));
        }
        if !closed {
            return Err(format!("vector {name}: the hex block is not closed"));
        }
        let bytes = hex::decode(&hex_text).map_err(|e| format!("vector {name}: {e}"))?;
        if out.iter().any(|v| v.name == name) {
            return Err(format!("vector {name} appears twice"));
        }
        out.push(SpecVector { name, error, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vectors_with_comments_and_error_kinds() {
        let page = "text\n<!-- vector: a -->\n```hex\nA2 01 # one\n  02\n```\n\
                    <!-- vector: b error: Malformed -->\n```hex\nff\n```\n";
        let v = extract_vectors(page).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[0].name.as_str(),
                v[0].error.as_deref(),
                v[0].bytes.as_slice()
            ),
            ("a", None, &[0xa2, 1, 2][..])
        );
        assert_eq!(v[1].error.as_deref(), Some("Malformed"));
    }

    #[test]
    fn refuses_broken_pages() {
        assert!(extract_vectors("<!-- vector: a -->\nnot hex fence\n").is_err());
        assert!(extract_vectors("<!-- vector: a -->\n```hex\nzz\n```\n").is_err());
        assert!(extract_vectors("<!-- vector: a -->\n```hex\n00\n").is_err());
        assert!(extract_vectors("<!-- vector: a x y -->\n```hex\n00\n```\n").is_err());
        let twice = "<!-- vector: a -->\n```hex\n00\n```\n<!-- vector: a -->\n```hex\n01\n```\n";
        assert!(extract_vectors(twice).unwrap_err().contains("twice"));
    }
}
