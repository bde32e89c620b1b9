//! `$regex` without a regex crate: a documented subset compiled to a Pike
//! VM, so matching is linear in the text whatever the pattern (no
//! backtracking blow-up from a client's pattern).
//!
//! Supported: literals; `.`; `^` `$` (whole text, or lines with `m`);
//! `\b` `\B`; classes `[…]` `[^…]` with ranges; `\d \D \w \W \s \S`;
//! escapes `\n \t \r \f \v \0 \xHH \uHHHH \x{…} \u{…}` and any escaped
//! punctuation; `\Q…\E` quoting (the JS SDK's `contains`/`startsWith`/
//! `endsWith`); groups `(…)` `(?:…)`; `|`; `* + ? {n} {n,} {n,m}`, lazy
//! forms too (same match or no match). Options `i`, `m`, `s`. Refused with
//! a reason: backreferences, lookaround, named groups, `\p{…}`, possessive
//! quantifiers, option `x`, patterns over 1000 characters or compiling to
//! more than 20000 steps.

const MAX_PATTERN: usize = 1000;
const MAX_REPEAT: u32 = 1000;
const MAX_PROGRAM: usize = 20_000;
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub struct Pattern {
    prog: Vec<Inst>,
    classes: Vec<Class>,
    fold: bool,
    multiline: bool,
    dotall: bool,
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    Char(char),
    Any,
    Class(usize),
    Start,
    End,
    Boundary(bool),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

#[derive(Debug, Clone, Copy)]
enum Perl {
    Digit,
    Word,
    Space,
}

#[derive(Debug, Clone, Default)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
    /// A `\d`-style class and whether it is the negated form.
    perl: Vec<(Perl, bool)>,
}

enum Node {
    Char(char),
    Any,
    Class(usize),
    Start,
    End,
    Boundary(bool),
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    Rep(Box<Node>, u32, Option<u32>),
}

/// One escape's meaning.
enum Esc {
    Char(char),
    Perl(Perl, bool),
    Node(Node),
}

impl Perl {
    fn test(self, c: char) -> bool {
        match self {
            Perl::Digit => c.is_ascii_digit(),
            Perl::Word => c.is_ascii_alphanumeric() || c == '_',
            Perl::Space => c.is_whitespace(),
        }
    }
}

impl Class {
    fn test(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
            || self.perl.iter().any(|&(p, neg)| p.test(c) != neg)
    }
    fn matches(&self, c: char, fold: bool) -> bool {
        let hit = self.test(c) || (fold && (self.test(lower(c)) || self.test(upper(c))));
        hit != self.negated
    }
}

fn lower(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

fn upper(c: char) -> char {
    let mut u = c.to_uppercase();
    match (u.next(), u.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    classes: Vec<Class>,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }
    fn next(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or("the pattern ends early")?;
        self.pos += 1;
        Ok(c)
    }

    fn alt(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.cat()?];
        while self.eat('|') {
            branches.push(self.cat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Cat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn cat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Cat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let save = self.pos;
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.pos += 1;
                match self.counted()? {
                    Some(q) => {
                        self.pos -= 1;
                        q
                    }
                    // Not a quantifier: `{` is a literal, as in PCRE and JS.
                    None => {
                        self.pos = save;
                        return Ok(atom);
                    }
                }
            }
            _ => return Ok(atom),
        };
        self.pos += 1;
        self.eat('?');
        match self.peek() {
            Some('+') => return Err("possessive quantifiers are not supported".into()),
            Some('*' | '?') => return Err("a quantifier follows a quantifier".into()),
            Some('{') if self.counted_ahead() => {
                return Err("a quantifier follows a quantifier".into());
            }
            _ => {}
        }
        if matches!(atom, Node::Start | Node::End | Node::Boundary(_)) {
            return Err("an anchor cannot be repeated".into());
        }
        Ok(Node::Rep(Box::new(atom), min, max))
    }

    fn counted_ahead(&mut self) -> bool {
        let save = self.pos;
        self.pos += 1;
        let is = matches!(self.counted(), Ok(Some(_)));
        self.pos = save;
        is
    }

    /// After `{`: `n}`, `n,}` or `n,m}`, leaving `pos` after `}`;
    /// `None` when it is not that shape.
    fn counted(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let number = |p: &mut Parser| {
            let start = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            let text: String = p.chars[start..p.pos].iter().collect();
            (!text.is_empty()).then(|| text.parse::<u64>().unwrap_or(u64::MAX))
        };
        let Some(min) = number(self) else {
            return Ok(None);
        };
        let max = if self.eat(',') {
            number(self)
        } else {
            Some(min)
        };
        if !self.eat('}') {
            return Ok(None);
        }
        let limit = u64::from(MAX_REPEAT);
        if min > limit || max.is_some_and(|m| m > limit) {
            return Err(format!("a repeat count is over {MAX_REPEAT}"));
        }
        if max.is_some_and(|m| m < min) {
            return Err("a repeat range is backwards".into());
        }
        Ok(Some((min as u32, max.map(|m| m as u32))))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.next()?;
        Ok(match c {
            '(' => {
                if self.eat('?') && !self.eat(':') {
                    return Err("only (?:…) groups are supported (no lookaround, named groups or inline flags)".into());
                }
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err("groups nest too deep".into());
                }
                let inner = self.alt()?;
                self.depth -= 1;
                if !self.eat(')') {
                    return Err("a group is not closed".into());
                }
                inner
            }
            '[' => self.class()?,
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '*' | '+' | '?' => return Err(format!("{c} has nothing to repeat")),
            '\\' => match self.escape(false)? {
                Esc::Char(c) => Node::Char(c),
                Esc::Perl(p, neg) => self.push_class(Class {
                    perl: vec![(p, neg)],
                    ..Class::default()
                }),
                Esc::Node(n) => n,
            },
            c => Node::Char(c),
        })
    }

    fn push_class(&mut self, class: Class) -> Node {
        self.classes.push(class);
        Node::Class(self.classes.len() - 1)
    }

    fn escape(&mut self, in_class: bool) -> Result<Esc, String> {
        let c = self
            .next()
            .map_err(|_| "the pattern ends with a lone backslash".to_string())?;
        Ok(Esc::Char(match c {
            'd' => return Ok(Esc::Perl(Perl::Digit, false)),
            'D' => return Ok(Esc::Perl(Perl::Digit, true)),
            'w' => return Ok(Esc::Perl(Perl::Word, false)),
            'W' => return Ok(Esc::Perl(Perl::Word, true)),
            's' => return Ok(Esc::Perl(Perl::Space, false)),
            'S' => return Ok(Esc::Perl(Perl::Space, true)),
            'b' if in_class => '\u{8}',
            'b' => return Ok(Esc::Node(Node::Boundary(true))),
            'B' if !in_class => return Ok(Esc::Node(Node::Boundary(false))),
            'Q' if !in_class => {
                let mut lit = Vec::new();
                while let Some(c) = self.peek() {
                    if c == '\\' && self.chars.get(self.pos + 1) == Some(&'E') {
                        self.pos += 2;
                        break;
                    }
                    lit.push(Node::Char(c));
                    self.pos += 1;
                }
                return Ok(Esc::Node(Node::Cat(lit)));
            }
            // A stray `\E` ends nothing, as in PCRE.
            'E' if !in_class => return Ok(Esc::Node(Node::Cat(Vec::new()))),
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '0' => '\0',
            'x' => self.hex(2)?,
            'u' => self.hex(4)?,
            '1'..='9' => return Err("backreferences are not supported".into()),
            c if c.is_ascii_alphanumeric() => {
                return Err(format!("the escape \\{c} is not supported"));
            }
            c => c,
        }))
    }

    /// `width` hex digits, or `{…}` with up to six.
    fn hex(&mut self, width: usize) -> Result<char, String> {
        let braced = self.eat('{');
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit())
            && (braced || self.pos - start < width)
        {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        let ok = if braced {
            self.eat('}') && (1..=6).contains(&digits.len())
        } else {
            digits.len() == width
        };
        u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| ok)
            .and_then(char::from_u32)
            .ok_or_else(|| "a \\x or \\u escape is malformed".to_string())
    }

    fn class(&mut self) -> Result<Node, String> {
        let mut class = Class {
            negated: self.eat('^'),
            ..Class::default()
        };
        let mut first = true;
        loop {
            let c = self
                .next()
                .map_err(|_| "a [class] is not closed".to_string())?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' => match self.escape(true)? {
                    Esc::Char(c) => c,
                    Esc::Perl(p, neg) => {
                        class.perl.push((p, neg));
                        continue;
                    }
                    Esc::Node(_) => return Err("that escape cannot be in a [class]".into()),
                },
                c => c,
            };
            let is_range =
                self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']');
            if !is_range {
                class.ranges.push((lo, lo));
                continue;
            }
            self.pos += 1;
            let hi = match self.next()? {
                '\\' => match self.escape(true)? {
                    Esc::Char(c) => c,
                    _ => return Err("a range ends in a class escape".into()),
                },
                c => c,
            };
            if hi < lo {
                return Err(format!("the range {lo}-{hi} is backwards"));
            }
            class.ranges.push((lo, hi));
        }
        Ok(self.push_class(class))
    }
}

struct Compiler {
    prog: Vec<Inst>,
}

impl Compiler {
    fn push(&mut self, i: Inst) -> Result<usize, String> {
        if self.prog.len() >= MAX_PROGRAM {
            return Err("the pattern is too large".into());
        }
        self.prog.push(i);
        Ok(self.prog.len() - 1)
    }

    fn emit(&mut self, n: &Node) -> Result<(), String> {
        match n {
            Node::Char(c) => self.push(Inst::Char(*c)).map(drop),
            Node::Any => self.push(Inst::Any).map(drop),
            Node::Class(i) => self.push(Inst::Class(*i)).map(drop),
            Node::Start => self.push(Inst::Start).map(drop),
            Node::End => self.push(Inst::End).map(drop),
            Node::Boundary(b) => self.push(Inst::Boundary(*b)).map(drop),
            Node::Cat(items) => items.iter().try_for_each(|n| self.emit(n)),
            Node::Alt(branches) => {
                let mut jumps = Vec::new();
                for (i, b) in branches.iter().enumerate() {
                    if i + 1 == branches.len() {
                        self.emit(b)?;
                    } else {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(b)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        self.prog[split] = Inst::Split(split + 1, self.prog.len());
                    }
                }
                let end = self.prog.len();
                for j in jumps {
                    self.prog[j] = Inst::Jmp(end);
                }
                Ok(())
            }
            Node::Rep(inner, min, max) => {
                for _ in 0..*min {
                    self.emit(inner)?;
                }
                match max {
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(inner)?;
                        self.push(Inst::Jmp(split))?;
                        self.prog[split] = Inst::Split(split + 1, self.prog.len());
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.emit(inner)?;
                        }
                        let end = self.prog.len();
                        for s in splits {
                            self.prog[s] = Inst::Split(s + 1, end);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl Pattern {
    pub fn new(pattern: &str, options: &str) -> Result<Pattern, String> {
        let (mut fold, mut multiline, mut dotall) = (false, false, false);
        for o in options.chars() {
            match o {
                'i' => fold = true,
                'm' => multiline = true,
                's' => dotall = true,
                o => return Err(format!("option {o:?} is not supported")),
            }
        }
        let chars: Vec<char> = pattern.chars().collect();
        if chars.len() > MAX_PATTERN {
            return Err(format!("the pattern is over {MAX_PATTERN} characters"));
        }
        let mut p = Parser {
            chars,
            pos: 0,
            classes: Vec::new(),
            depth: 0,
        };
        let node = p.alt()?;
        if p.pos < p.chars.len() {
            return Err("a ) has no (".into());
        }
        let mut c = Compiler { prog: Vec::new() };
        c.emit(&node)?;
        c.push(Inst::Match)?;
        Ok(Pattern {
            prog: c.prog,
            classes: p.classes,
            fold,
            multiline,
            dotall,
        })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut seen = vec![usize::MAX; self.prog.len()];
        let (mut now, mut next, mut stack) = (Vec::new(), Vec::new(), Vec::new());
        for pos in 0..=chars.len() {
            // A thread starts at every position: the match is unanchored.
            if self.add(&mut now, &mut seen, &mut stack, 0, pos, &chars) {
                return true;
            }
            let Some(&c) = chars.get(pos) else {
                break;
            };
            for &pc in &now {
                let step = match self.prog[pc] {
                    Inst::Char(x) => x == c || (self.fold && lower(x) == lower(c)),
                    Inst::Any => self.dotall || c != '\n',
                    Inst::Class(i) => self.classes[i].matches(c, self.fold),
                    _ => false,
                };
                if step && self.add(&mut next, &mut seen, &mut stack, pc + 1, pos + 1, &chars) {
                    return true;
                }
            }
            std::mem::swap(&mut now, &mut next);
            next.clear();
        }
        false
    }

    /// Follows jumps, splits and assertions from `pc` at `pos`, adding
    /// the character-consuming steps to `list`; true on reaching Match.
    /// `seen[pc] == pos` marks a step already taken at this position.
    fn add(
        &self,
        list: &mut Vec<usize>,
        seen: &mut [usize],
        stack: &mut Vec<usize>,
        pc: usize,
        pos: usize,
        chars: &[char],
    ) -> bool {
        let is_word = |i: Option<usize>| {
            i.and_then(|i| chars.get(i))
                .is_some_and(|&c| Perl::Word.test(c))
        };
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match self.prog[pc] {
                Inst::Match => return true,
                Inst::Jmp(t) => stack.push(t),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Start => {
                    if pos == 0 || (self.multiline && chars[pos - 1] == '\n') {
                        stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    if pos == chars.len() || (self.multiline && chars[pos] == '\n') {
                        stack.push(pc + 1);
                    }
                }
                Inst::Boundary(want) => {
                    if (is_word(pos.checked_sub(1)) != is_word(Some(pos))) == want {
                        stack.push(pc + 1);
                    }
                }
                Inst::Char(_) | Inst::Any | Inst::Class(_) => list.push(pc),
            }
        }
        false
    }
}
