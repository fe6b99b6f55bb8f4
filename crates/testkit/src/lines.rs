//! One line of a program's output or report, found by how it starts: a test
//! checks that line alone, and when the line is not there its failure shows
//! the whole text instead of a bare `unwrap` on `None`.

/// The first line of `text` that starts with `prefix`; panics, showing
/// `text`, when there is none, so a call alone asserts that the line is
/// there.
#[track_caller]
pub fn starting_with<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in:\n{text}"))
}
