//! `$regex` on the `regex` crate, whose matching is linear in the text
//! whatever the pattern, so a client's pattern cannot make a query hang.
//! Patterns are the SDKs' (JavaScript and ICU syntax, as `_Conversation`
//! queries took them): the shared syntax works; backreferences and
//! lookaround, which no linear engine can run, are refused with the
//! crate's reason. `\Q…\E` quoting (the JS SDK's `contains`, `startsWith`,
//! `endsWith`), which the crate does not know, is escaped here first.

/// Longest pattern accepted, in bytes.
const MAX_PATTERN: usize = 1000;
/// Bound on the compiled program, so a short pattern with large counted
/// repetitions (`(a{1000}){1000}`) is refused rather than built.
const MAX_PROGRAM_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// `options` are LeanCloud's `$options` letters: `i`, `m`, `s`.
    pub fn new(pattern: &str, options: &str) -> Result<Pattern, String> {
        if pattern.len() > MAX_PATTERN {
            return Err(format!("a pattern over {MAX_PATTERN} bytes"));
        }
        let mut b = regex::RegexBuilder::new(&unquote(pattern));
        for o in options.chars() {
            match o {
                'i' => b.case_insensitive(true),
                'm' => b.multi_line(true),
                's' => b.dot_matches_new_line(true),
                other => return Err(format!("option '{other}' is not supported")),
            };
        }
        b.size_limit(MAX_PROGRAM_BYTES)
            .dfa_size_limit(MAX_PROGRAM_BYTES)
            .build()
            .map(Pattern)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
                // The crate's own text, on one line.
                e => e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// `\Q…\E` spans (an unclosed `\Q` runs to the end) as escaped literals.
fn unquote(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = find_unescaped(rest, "\\Q") {
        out.push_str(&rest[..start]);
        let quoted = &rest[start + 2..];
        let (literal, after) = match quoted.find("\\E") {
            Some(end) => (&quoted[..end], &quoted[end + 2..]),
            None => (quoted, ""),
        };
        out.push_str(&regex::escape(literal));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Where `needle` (a backslash escape) starts in `hay`, skipping escaped
/// backslashes (`\\Q` is a backslash and a `Q`).
fn find_unescaped(hay: &str, needle: &str) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if hay[i..].starts_with(needle) {
                return Some(i);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}
