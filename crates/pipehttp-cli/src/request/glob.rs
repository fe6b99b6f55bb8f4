//! curl's URL globbing (src/tool_urlglob.c): `{a,b}` sets and `[1-3]`,
//! `[01-10]`, `[a-z]`, `[1-9:2]` ranges make one URL into several, and
//! `#N` in an -o name stands for the Nth glob's value. `-g` turns it off.

/// curl refuses URLs with more globs and literal parts than this.
const MAX_PATTERNS: usize = 100;

#[derive(Debug, Clone)]
enum Pattern {
    Fixed(String),
    Set(Vec<String>),
    Chars {
        min: u8,
        max: u8,
        step: u8,
    },
    Numbers {
        min: u64,
        max: u64,
        step: u64,
        pad: usize,
    },
}

impl Pattern {
    fn len(&self) -> u64 {
        match self {
            Pattern::Fixed(_) => 1,
            Pattern::Set(elements) => elements.len() as u64,
            Pattern::Chars { min, max, step } => u64::from((max - min) / step) + 1,
            Pattern::Numbers { min, max, step, .. } => (max - min) / step + 1,
        }
    }

    fn value(&self, at: u64) -> String {
        match self {
            Pattern::Fixed(text) => text.clone(),
            Pattern::Set(elements) => elements[usize::try_from(at).unwrap_or(0)].clone(),
            Pattern::Chars { min, step, .. } => {
                // `at` < len() keeps this within min..=max.
                char::from(min + u8::try_from(at).unwrap_or(0) * step).to_string()
            }
            Pattern::Numbers { min, step, pad, .. } => format!("{:0pad$}", min + at * step),
        }
    }
}

/// A URL with its globs.
#[derive(Debug, Clone)]
pub struct Glob {
    patterns: Vec<Pattern>,
}

/// A glob that does not parse: curl's message and exit code 3.
#[derive(Debug)]
pub struct GlobError {
    pub message: String,
}

/// One URL a glob stands for, with each glob's value (for `#N`).
#[derive(Debug, Clone)]
pub struct Expanded {
    pub url: String,
    values: Vec<String>,
    /// How many patterns, literal parts included: curl accepts `#N` only
    /// for N below that.
    patterns: usize,
}

impl Expanded {
    /// A URL that is not globbed (`-g`).
    pub fn plain(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            values: Vec::new(),
            patterns: 0,
        }
    }

    /// An -o name with `#N` replaced by the Nth glob's value; a `#N` with
    /// no such glob stays as it is.
    pub fn fill(&self, name: &str) -> String {
        let mut out = String::new();
        let mut rest = name;
        while let Some(at) = rest.find('#') {
            out.push_str(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let number: Option<usize> = rest[at + 1..at + 1 + digits].parse().ok();
            match number.filter(|n| *n >= 1 && *n < self.patterns) {
                Some(n) if n <= self.values.len() => {
                    out.push_str(&self.values[n - 1]);
                    rest = &rest[at + 1 + digits..];
                }
                _ => {
                    out.push('#');
                    rest = &rest[at + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

impl Glob {
    /// Parses `url` as curl does before it sends anything.
    pub fn parse(url: &str) -> Result<Self, GlobError> {
        let mut parser = Parser {
            url,
            bytes: url.as_bytes(),
            at: 0,
        };
        let mut patterns = Vec::new();
        let mut total: u64 = 1;
        while parser.at < parser.bytes.len() {
            let literal = parser.literal()?;
            let pattern = if !literal.is_empty() {
                Pattern::Fixed(literal)
            } else if parser.bytes[parser.at] == b'{' {
                parser.at += 1;
                parser.set()?
            } else {
                parser.at += 1;
                parser.range()?
            };
            total = total
                .checked_mul(pattern.len())
                .ok_or_else(|| parser.error("range overflow"))?;
            patterns.push(pattern);
            if patterns.len() >= MAX_PATTERNS {
                return Err(parser.error("too many globs"));
            }
        }
        Ok(Self { patterns })
    }

    /// Every URL, the rightmost glob changing fastest.
    pub fn expand(&self) -> impl Iterator<Item = Expanded> + '_ {
        let mut counters: Option<Vec<u64>> = Some(vec![0; self.patterns.len()]);
        std::iter::from_fn(move || {
            let current = counters.clone()?;
            let mut url = String::new();
            let mut values = Vec::new();
            for (pattern, &at) in self.patterns.iter().zip(&current) {
                let value = pattern.value(at);
                url.push_str(&value);
                if !matches!(pattern, Pattern::Fixed(_)) {
                    values.push(value);
                }
            }
            // Advance like an odometer; past the last URL, stop.
            let next = counters.as_mut()?;
            let mut carry = true;
            for (i, pattern) in self.patterns.iter().enumerate().rev() {
                if !carry {
                    break;
                }
                next[i] += 1;
                carry = next[i] >= pattern.len();
                if carry {
                    next[i] = 0;
                }
            }
            if carry {
                counters = None;
            }
            Some(Expanded {
                url,
                values,
                patterns: self.patterns.len(),
            })
        })
    }
}

struct Parser<'a> {
    url: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> GlobError {
        GlobError {
            message: format!(
                "{what} in URL position {}: {} (-g/--globoff sends {{}} and [] as they are)",
                self.at + 1,
                self.url
            ),
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.at + ahead).copied()
    }

    /// Text up to the next glob; `[]` and an IPv6 literal are text, and a
    /// backslash escapes `{ } [ ]`.
    fn literal(&mut self) -> Result<String, GlobError> {
        let mut out: Vec<u8> = Vec::new();
        while let Some(c) = self.peek(0) {
            match c {
                b'{' => break,
                b'[' => {
                    let skip = self
                        .ipv6_literal()
                        .or((self.peek(1) == Some(b']')).then_some(2));
                    match skip {
                        Some(n) => {
                            out.extend_from_slice(&self.bytes[self.at..self.at + n]);
                            self.at += n;
                        }
                        None => break,
                    }
                }
                b'}' | b']' => return Err(self.error("unmatched close brace/bracket")),
                b'\\' if matches!(self.peek(1), Some(b'{' | b'[' | b'}' | b']')) => {
                    out.push(self.bytes[self.at + 1]);
                    self.at += 2;
                }
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The length of `[IPv6]` at the cursor, if that is what it is.
    fn ipv6_literal(&self) -> Option<usize> {
        let end = self.bytes[self.at..].iter().position(|b| *b == b']')?;
        let inner = std::str::from_utf8(&self.bytes[self.at + 1..self.at + end]).ok()?;
        let address = inner.split_once("%25").map_or(inner, |(a, _)| a);
        address.parse::<std::net::Ipv6Addr>().ok().map(|_| end + 1)
    }

    /// `a,b,c}` after a `{`.
    fn set(&mut self) -> Result<Pattern, GlobError> {
        let opened = self.at;
        let mut elements = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.error("unmatched brace"));
            };
            match c {
                b'{' | b'[' => return Err(self.error("nested brace")),
                b']' => return Err(self.error("unexpected close bracket")),
                b'}' if self.at == opened => {
                    return Err(self.error("empty string within braces"));
                }
                b'}' | b',' => {
                    elements.push(String::from_utf8_lossy(&current).into_owned());
                    current.clear();
                    self.at += 1;
                    if c == b'}' {
                        return Ok(Pattern::Set(elements));
                    }
                }
                b'\\' if self.peek(1).is_some() => {
                    current.push(self.bytes[self.at + 1]);
                    self.at += 2;
                }
                c => {
                    current.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// `a-z]`, `1-10]`, `001-100]`, with an optional `:STEP`, after a `[`.
    fn range(&mut self) -> Result<Pattern, GlobError> {
        let rest = &self.bytes[self.at..];
        let bad = |p: &Self| p.error("bad range");
        match rest.first() {
            Some(c) if c.is_ascii_alphabetic() => {
                let (min, max) = match rest {
                    [min, b'-', max, ..] => (*min, *max),
                    _ => return Err(bad(self)),
                };
                let (step, used) = match rest.get(3) {
                    Some(b']') => (1, 4),
                    Some(b':') => {
                        let digits = rest[4..].iter().take_while(|b| b.is_ascii_digit()).count();
                        if digits == 0 || rest.get(4 + digits) != Some(&b']') {
                            return Err(bad(self));
                        }
                        let step = std::str::from_utf8(&rest[4..4 + digits])
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or(0);
                        (step, 4 + digits + 1)
                    }
                    _ => return Err(bad(self)),
                };
                let span = u64::from(max.wrapping_sub(min));
                let well_formed = step > 0
                    && if min == max {
                        step == 1
                    } else {
                        min < max && step <= span && span <= u64::from(b'z' - b'a')
                    };
                if !well_formed {
                    return Err(bad(self));
                }
                self.at += used;
                Ok(Pattern::Chars {
                    min,
                    max,
                    step: u8::try_from(step).map_err(|_| bad(self))?,
                })
            }
            Some(c) if c.is_ascii_digit() => {
                let number = |from: usize| -> (usize, Option<u64>) {
                    let digits = rest[from..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let value = std::str::from_utf8(&rest[from..from + digits])
                        .ok()
                        .and_then(|s| s.parse().ok());
                    (digits, value)
                };
                let (min_digits, min) = number(0);
                let pad = if rest[0] == b'0' { min_digits } else { 0 };
                if rest.get(min_digits) != Some(&b'-') {
                    return Err(bad(self));
                }
                let mut at = min_digits + 1;
                while matches!(rest.get(at), Some(b' ' | b'\t')) {
                    at += 1;
                }
                let (max_digits, max) = number(at);
                if max_digits == 0 {
                    return Err(bad(self));
                }
                at += max_digits;
                let step = if rest.get(at) == Some(&b':') {
                    let (digits, step) = number(at + 1);
                    at += 1 + digits;
                    step
                } else {
                    Some(1)
                };
                if rest.get(at) != Some(&b']') {
                    return Err(bad(self));
                }
                let (Some(min), Some(max), Some(step)) = (min, max, step) else {
                    return Err(bad(self));
                };
                let well_formed = step > 0
                    && if min == max {
                        step == 1
                    } else {
                        min < max && step <= max - min
                    };
                if !well_formed {
                    return Err(bad(self));
                }
                self.at += at + 1;
                Ok(Pattern::Numbers {
                    min,
                    max,
                    step,
                    pad,
                })
            }
            _ => Err(self.error("bad range specification")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(pattern: &str) -> Vec<String> {
        Glob::parse(pattern)
            .unwrap()
            .expand()
            .map(|e| e.url)
            .collect()
    }

    #[test]
    fn sets_and_ranges_expand_as_curl_does() {
        assert_eq!(urls("h/{a,b}/[1-2]"), ["h/a/1", "h/a/2", "h/b/1", "h/b/2"]);
        assert_eq!(urls("h/[08-10]"), ["h/08", "h/09", "h/10"]);
        assert_eq!(urls("h/[a-e:2]"), ["h/a", "h/c", "h/e"]);
        assert_eq!(urls("h/[1-7:3]"), ["h/1", "h/4", "h/7"]);
        assert_eq!(urls("h/{x,,y}"), ["h/x", "h/", "h/y"]);
        assert_eq!(urls(r"h/\{a\}?q[]=1"), ["h/{a}?q[]=1"]);
        assert_eq!(urls("http://[::1]:8080/x"), ["http://[::1]:8080/x"]);
        assert_eq!(urls("plain"), ["plain"]);
    }

    #[test]
    fn bad_globs_are_refused() {
        for bad in [
            "h/{a",
            "h/{}",
            "h/[1-",
            "h/[3-1]",
            "h/[x]",
            "h/a}",
            "h/{a,[1-2]}",
        ] {
            assert!(Glob::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_numbers_fill_output_names() {
        let all: Vec<Expanded> = Glob::parse("h/{a,b}/[1-2]").unwrap().expand().collect();
        assert_eq!(all[1].fill("f_#1_#2.txt"), "f_a_2.txt");
        assert_eq!(all[1].fill("#3#x#"), "#3#x#");
    }
}
