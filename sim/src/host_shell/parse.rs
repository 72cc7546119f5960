//! A strict parser for the part of POSIX `sh` that drctl's SSH adapter renders: words in single
//! quotes, double quotes and backslash escapes, `$name`/`${name}`/`$0`…`$9`/`$$`/`$?`, `$(…)`,
//! `;` `&&` `||` `|`, `if`/`elif`/`else`/`fi`, `{ …; }`, assignments and the redirections
//! `>`, `>>`, `<`, `N>&M`. Anything else (backquotes, globs, `&`, subshells, here-documents,
//! arithmetic, `${x:-y}`, `case`, loops) is a syntax error: the twin must never guess what a
//! command line means.

/// One piece of a word, before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text. Quoted text is never split into fields.
    Lit { text: String, quoted: bool },
    /// A parameter: a name, a positional digit, `$` or `?`.
    Param { name: String, quoted: bool },
    /// `$( … )`.
    Subst { program: List, quoted: bool },
}

/// A word: its parts, concatenated after expansion.
pub type Word = Vec<Part>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `>` (and `>|`): truncate and write.
    Out,
    /// `>>`.
    Append,
    /// `<`.
    In,
    /// `>&M`: duplicate output descriptor M.
    DupOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redir {
    pub fd: u32,
    pub op: RedirOp,
    pub target: Word,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simple {
    pub assigns: Vec<(String, Word)>,
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Simple(Simple),
    /// `if C; then B; [elif C; then B;]… [else B;] fi`: the (condition, body) arms in order.
    If {
        arms: Vec<(List, List)>,
        otherwise: Option<List>,
        redirs: Vec<Redir>,
    },
    /// `{ …; }`.
    Group {
        body: List,
        redirs: Vec<Redir>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joint {
    And,
    Or,
}

/// `a | b | c`.
pub type Pipeline = Vec<Command>;

/// `p1 && p2 || p3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(Joint, Pipeline)>,
}

/// A sequence of and-or lists (`;` or newline separated): a whole program or a compound body.
pub type List = Vec<AndOr>;

/// Parse a command line.
pub fn parse(src: &str) -> Result<List, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut pos = 0;
    let toks = lex(&chars, &mut pos, false)?;
    parse_tokens(toks)
}

fn parse_tokens(toks: Vec<Tok>) -> Result<List, String> {
    let mut p = Parser { toks, pos: 0 };
    let list = p.list(&[])?;
    match p.peek() {
        None => Ok(list),
        Some(t) => Err(format!("unexpected {}", t.describe())),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Semi,
    AndIf,
    OrIf,
    Pipe,
    Newline,
    Redir { fd: Option<u32>, op: RedirOp },
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("word {:?}", plain(w).unwrap_or("…")),
            Tok::Semi => "';'".into(),
            Tok::AndIf => "'&&'".into(),
            Tok::OrIf => "'||'".into(),
            Tok::Pipe => "'|'".into(),
            Tok::Newline => "newline".into(),
            Tok::Redir { .. } => "redirection".into(),
        }
    }
}

/// The text of a word that is one unquoted literal (how reserved words are recognised).
fn plain(w: &Word) -> Option<&str> {
    match w.as_slice() {
        [Part::Lit { text, quoted: false }] => Some(text),
        _ => None,
    }
}

/// Tokens up to the end, or (inside `$(`) up to and including the closing `)`.
fn lex(s: &[char], pos: &mut usize, in_subst: bool) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    loop {
        let Some(&c) = s.get(*pos) else {
            return match in_subst {
                true => Err("unterminated $(".into()),
                false => Ok(toks),
            };
        };
        match c {
            ' ' | '\t' => *pos += 1,
            '\n' => {
                *pos += 1;
                toks.push(Tok::Newline);
            }
            '#' => skip_comment(s, pos),
            ')' if in_subst => {
                *pos += 1;
                return Ok(toks);
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => toks.push(operator(s, pos, None)?),
            '\\' if s.get(*pos + 1) == Some(&'\n') => *pos += 2,
            _ => {
                let word = word(s, pos)?;
                let fd = io_number(&word).filter(|_| matches!(s.get(*pos), Some('<' | '>')));
                match fd {
                    Some(fd) => toks.push(operator(s, pos, Some(fd))?),
                    None => toks.push(Tok::Word(word)),
                }
            }
        }
    }
}

fn skip_comment(s: &[char], pos: &mut usize) {
    while s.get(*pos).is_some_and(|c| *c != '\n') {
        *pos += 1;
    }
}

/// `2` in `2>/dev/null`: a word of unquoted digits right before `<` or `>`.
fn io_number(w: &Word) -> Option<u32> {
    plain(w).filter(|t| t.chars().all(|c| c.is_ascii_digit())).and_then(|t| t.parse().ok())
}

fn operator(s: &[char], pos: &mut usize, fd: Option<u32>) -> Result<Tok, String> {
    let c = s[*pos];
    let next = s.get(*pos + 1).copied();
    let (tok, len) = match (c, next) {
        (';', Some(';')) => return Err("';;' outside case".into()),
        (';', _) => (Tok::Semi, 1),
        ('&', Some('&')) => (Tok::AndIf, 2),
        ('&', _) => return Err("background jobs ('&') are not supported".into()),
        ('|', Some('|')) => (Tok::OrIf, 2),
        ('|', _) => (Tok::Pipe, 1),
        ('>', Some('>')) => (Tok::Redir { fd, op: RedirOp::Append }, 2),
        ('>', Some('&')) => (Tok::Redir { fd, op: RedirOp::DupOut }, 2),
        ('>', Some('|')) => (Tok::Redir { fd, op: RedirOp::Out }, 2),
        ('>', _) => (Tok::Redir { fd, op: RedirOp::Out }, 1),
        ('<', Some('<' | '&' | '>')) => return Err("here-documents, '<&' and '<>' are not supported".into()),
        ('<', _) => (Tok::Redir { fd, op: RedirOp::In }, 1),
        _ => return Err(format!("unexpected '{c}' (subshells are not supported)")),
    };
    *pos += len;
    Ok(tok)
}

fn is_meta(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

/// Add literal text to a word, merging with a literal of the same quoting before it.
fn push_lit(w: &mut Word, text: &str, quoted: bool) {
    if let Some(Part::Lit { text: t, quoted: q }) = w.last_mut() {
        if *q == quoted {
            t.push_str(text);
            return;
        }
    }
    w.push(Part::Lit { text: text.to_string(), quoted });
}

fn word(s: &[char], pos: &mut usize) -> Result<Word, String> {
    let mut w = Word::new();
    while let Some(&c) = s.get(*pos) {
        if is_meta(c) {
            break;
        }
        match c {
            '\'' => single_quoted(s, pos, &mut w)?,
            '"' => double_quoted(s, pos, &mut w)?,
            '\\' => match s.get(*pos + 1) {
                Some('\n') => *pos += 2,
                Some(&e) => {
                    push_lit(&mut w, &e.to_string(), true);
                    *pos += 2;
                }
                None => return Err("'\\' at the end of the input".into()),
            },
            '$' => dollar(s, pos, &mut w, false)?,
            '`' => return Err("backquote command substitution is not supported".into()),
            '*' | '?' | '[' if !is_test_bracket(s, *pos, &w) => return Err(format!("unquoted glob character '{c}' is not supported")),
            '~' if w.is_empty() => return Err("tilde expansion is not supported".into()),
            _ => {
                push_lit(&mut w, &c.to_string(), false);
                *pos += 1;
            }
        }
    }
    Ok(w)
}

/// The command `[` (a word that is exactly `[`) is not a glob.
fn is_test_bracket(s: &[char], pos: usize, w: &Word) -> bool {
    s[pos] == '[' && w.is_empty() && s.get(pos + 1).is_none_or(|c| is_meta(*c))
}

fn single_quoted(s: &[char], pos: &mut usize, w: &mut Word) -> Result<(), String> {
    let start = *pos + 1;
    let len = s[start..].iter().position(|c| *c == '\'').ok_or("unterminated single quote")?;
    let text: String = s[start..start + len].iter().collect();
    push_lit(w, &text, true);
    *pos = start + len + 1;
    Ok(())
}

fn double_quoted(s: &[char], pos: &mut usize, w: &mut Word) -> Result<(), String> {
    *pos += 1;
    // `""` is an empty field, not nothing.
    push_lit(w, "", true);
    loop {
        match s.get(*pos) {
            None => return Err("unterminated double quote".into()),
            Some('"') => {
                *pos += 1;
                return Ok(());
            }
            Some('\\') => {
                match s.get(*pos + 1) {
                    Some('\n') => {}
                    Some(&e @ ('$' | '`' | '"' | '\\')) => push_lit(w, &e.to_string(), true),
                    Some(&e) => push_lit(w, &format!("\\{e}"), true),
                    None => return Err("unterminated double quote".into()),
                }
                *pos += 2;
            }
            Some('$') => dollar(s, pos, w, true)?,
            Some('`') => return Err("backquote command substitution is not supported".into()),
            Some(&c) => {
                push_lit(w, &c.to_string(), true);
                *pos += 1;
            }
        }
    }
}

/// `$…` at `pos`.
fn dollar(s: &[char], pos: &mut usize, w: &mut Word, quoted: bool) -> Result<(), String> {
    let next = s.get(*pos + 1).copied();
    match next {
        Some('(') if s.get(*pos + 2) == Some(&'(') => Err("arithmetic expansion is not supported".into()),
        Some('(') => {
            *pos += 2;
            let toks = lex(s, pos, true)?;
            w.push(Part::Subst { program: parse_tokens(toks)?, quoted });
            Ok(())
        }
        Some('{') => {
            let start = *pos + 2;
            let len = s[start..].iter().position(|c| *c == '}').ok_or("unterminated ${")?;
            let name: String = s[start..start + len].iter().collect();
            if !is_name(&name) && !is_special(&name) {
                return Err(format!("parameter expansion ${{{name}}} is not supported"));
            }
            w.push(Part::Param { name, quoted });
            *pos = start + len + 1;
            Ok(())
        }
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {
            let start = *pos + 1;
            let len = s[start..].iter().take_while(|c| **c == '_' || c.is_ascii_alphanumeric()).count();
            w.push(Part::Param { name: s[start..start + len].iter().collect(), quoted });
            *pos = start + len;
            Ok(())
        }
        Some(c) if c.is_ascii_digit() || c == '$' || c == '?' => {
            w.push(Part::Param { name: c.to_string(), quoted });
            *pos += 2;
            Ok(())
        }
        Some(c @ ('#' | '@' | '*' | '!' | '-')) => Err(format!("special parameter ${c} is not supported")),
        _ => {
            push_lit(w, "$", quoted);
            *pos += 1;
            Ok(())
        }
    }
}

pub fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic()) && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn is_special(s: &str) -> bool {
    s.len() == 1 && s.chars().all(|c| c.is_ascii_digit() || c == '$' || c == '?')
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

const RESERVED: [&str; 7] = ["if", "then", "elif", "else", "fi", "{", "}"];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// The reserved word at the current position, if any (only meaningful in command position).
    fn reserved(&self) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Word(w)) => plain(w).and_then(|t| RESERVED.iter().copied().find(|r| *r == t)),
            _ => None,
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        match self.reserved() {
            Some(r) if r == word => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(format!("expected '{word}', found {}", self.peek().map(Tok::describe).unwrap_or("end of input".into()))),
        }
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    /// And-or lists up to the end or one of the reserved words `until`.
    fn list(&mut self, until: &[&str]) -> Result<List, String> {
        let mut list = List::new();
        loop {
            self.skip_newlines();
            if self.peek().is_none() || self.reserved().is_some_and(|r| until.contains(&r)) {
                return Ok(list);
            }
            list.push(self.and_or()?);
            match self.peek() {
                Some(Tok::Semi | Tok::Newline) => self.pos += 1,
                _ => return Ok(list),
            }
        }
    }

    fn nonempty_list(&mut self, until: &[&str], what: &str) -> Result<List, String> {
        let list = self.list(until)?;
        match list.is_empty() {
            true => Err(format!("empty {what}")),
            false => Ok(list),
        }
    }

    fn and_or(&mut self) -> Result<AndOr, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let joint = match self.peek() {
                Some(Tok::AndIf) => Joint::And,
                Some(Tok::OrIf) => Joint::Or,
                _ => return Ok(AndOr { first, rest }),
            };
            self.pos += 1;
            self.skip_newlines();
            rest.push((joint, self.pipeline()?));
        }
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        if matches!(self.peek(), Some(Tok::Word(w)) if plain(w) == Some("!")) {
            return Err("pipeline negation ('!') is not supported".into());
        }
        let mut cmds = vec![self.command()?];
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            self.skip_newlines();
            cmds.push(self.command()?);
        }
        Ok(cmds)
    }

    fn command(&mut self) -> Result<Command, String> {
        match self.reserved() {
            Some("if") => self.if_clause(),
            Some("{") => self.group(),
            Some(r) => Err(format!("unexpected '{r}'")),
            None => self.simple(),
        }
    }

    fn if_clause(&mut self) -> Result<Command, String> {
        self.expect("if")?;
        let mut arms = Vec::new();
        let mut otherwise = None;
        loop {
            let cond = self.nonempty_list(&["then"], "if condition")?;
            self.expect("then")?;
            let body = self.nonempty_list(&["elif", "else", "fi"], "then branch")?;
            arms.push((cond, body));
            match self.reserved() {
                Some("elif") => self.pos += 1,
                Some("else") => {
                    self.pos += 1;
                    otherwise = Some(self.nonempty_list(&["fi"], "else branch")?);
                    self.expect("fi")?;
                    break;
                }
                _ => {
                    self.expect("fi")?;
                    break;
                }
            }
        }
        Ok(Command::If { arms, otherwise, redirs: self.redirs()? })
    }

    fn group(&mut self) -> Result<Command, String> {
        self.expect("{")?;
        let body = self.nonempty_list(&["}"], "group")?;
        self.expect("}")?;
        Ok(Command::Group { body, redirs: self.redirs()? })
    }

    /// Redirections after a compound command.
    fn redirs(&mut self) -> Result<Vec<Redir>, String> {
        let mut redirs = Vec::new();
        while let Some(Tok::Redir { .. }) = self.peek() {
            redirs.push(self.redir()?);
        }
        Ok(redirs)
    }

    fn redir(&mut self) -> Result<Redir, String> {
        let Some(Tok::Redir { fd, op }) = self.next() else { return Err("expected a redirection".into()) };
        let fd = fd.unwrap_or(if op == RedirOp::In { 0 } else { 1 });
        match self.next() {
            Some(Tok::Word(target)) => Ok(Redir { fd, op, target }),
            other => Err(format!("redirection without a target (found {})", other.map(|t| t.describe()).unwrap_or("end of input".into()))),
        }
    }

    fn simple(&mut self) -> Result<Command, String> {
        let mut cmd = Simple { assigns: vec![], words: vec![], redirs: vec![] };
        loop {
            match self.peek() {
                Some(Tok::Redir { .. }) => {
                    let r = self.redir()?;
                    cmd.redirs.push(r);
                }
                Some(Tok::Word(w)) => {
                    let w = w.clone();
                    self.pos += 1;
                    match assignment(&w).filter(|_| cmd.words.is_empty()) {
                        Some(a) => cmd.assigns.push(a),
                        None => cmd.words.push(w),
                    }
                }
                _ => break,
            }
        }
        if cmd.assigns.is_empty() && cmd.words.is_empty() && cmd.redirs.is_empty() {
            return Err(format!("expected a command, found {}", self.peek().map(Tok::describe).unwrap_or("end of input".into())));
        }
        Ok(Command::Simple(cmd))
    }
}

/// `name=value` (the name unquoted): the name and the value's parts.
fn assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit { text, quoted: false }) = w.first() else { return None };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut rest = Word::new();
    if !value.is_empty() {
        rest.push(Part::Lit { text: value.to_string(), quoted: false });
    }
    rest.extend(w[1..].iter().cloned());
    Some((name.to_string(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(t: &str, quoted: bool) -> Part {
        Part::Lit { text: t.into(), quoted }
    }

    #[test]
    fn words_keep_their_quoting() {
        let list = parse(r#"echo 'a b' "c $x" d\ e"#).unwrap();
        let Command::Simple(s) = &list[0].first[0] else { panic!() };
        assert_eq!(s.words[1], vec![lit("a b", true)]);
        assert_eq!(s.words[2], vec![lit("c ", true), Part::Param { name: "x".into(), quoted: true }]);
        assert_eq!(s.words[3], vec![lit("d", false), lit(" ", true), lit("e", false)]);
        let list = parse("echo 'it'\\''s'").unwrap();
        let Command::Simple(s) = &list[0].first[0] else { panic!() };
        assert_eq!(s.words[1], vec![lit("it's", true)]);
    }

    #[test]
    fn compound_commands_and_redirections_parse() {
        let src = "sudo -n true 2>/dev/null || { echo 'x' >&2; exit 45; }; if a; then b && c; elif d; then e; else f; fi";
        let list = parse(src).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].rest.len(), 1);
        let Command::Simple(s) = &list[0].first[0] else { panic!() };
        assert_eq!(s.redirs, vec![Redir { fd: 2, op: RedirOp::Out, target: vec![lit("/dev/null", false)] }]);
        let Command::If { arms, otherwise, .. } = &list[1].first[0] else { panic!() };
        assert_eq!(arms.len(), 2);
        assert!(otherwise.is_some());
        let list = parse("cidr=$(ip -o address show dev br-ex 2>/dev/null | awk -v a=1 'x'); echo \"$cidr\"").unwrap();
        let Command::Simple(s) = &list[0].first[0] else { panic!() };
        assert_eq!(s.assigns[0].0, "cidr");
        assert!(matches!(&s.assigns[0].1[0], Part::Subst { program, quoted: false } if program[0].first.len() == 2));
    }

    #[test]
    fn what_is_not_supported_is_a_syntax_error() {
        for bad in [
            "echo `id`",
            "sleep 1 &",
            "(cd /)",
            "rm /var/lib/kubelet/pki/*.pem",
            "echo ${x:-y}",
            "echo $((1+1))",
            "cat <<EOF",
            "if true; then fi",
            "if true; then echo",
            "echo 'open",
            "{ echo; ",
            "! true",
            "echo ;;",
            "echo $(true",
            "> ",
            "; echo",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
