//! How every binary starts and ends: arguments whose errors are one line,
//! and an error turned into one line on stderr and a non-zero exit.

use clap::error::ErrorKind;
use clap::Parser;
use std::error::Error;
use std::process::ExitCode;

/// What a command returns: nothing, or an error whose `Display` is a sentence.
pub type Outcome = Result<(), Box<dyn Error>>;

/// The error of a command stopped by a signal: [`finish`] prints its
/// message (not as an error) and exits with 128 + the signal, as a shell
/// reports a process the signal ended.
#[derive(Debug)]
pub struct Interrupted {
    /// The signal.
    pub signal: i32,
    /// What was done before it came, as a sentence.
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Interrupted {}

/// Parses the command line; on a mistake prints one line naming it, then
/// exits with status 2 (`--help` and `--version` print as usual).
pub fn parse_or_exit<T: Parser>(prog: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("{prog}: {}", one_line(&e.render().to_string()));
            std::process::exit(2);
        }
    }
}

/// The first paragraph of a clap message on one line, as "error: ...".
fn one_line(message: &str) -> String {
    let paragraph: Vec<&str> = message
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let text = paragraph.join(" ");
    match text.strip_prefix("error: ") {
        Some(rest) => format!("error: {rest}"),
        None => format!("error: {text}"),
    }
}

/// Prints an error as one line, `PROG: error: ...`, and maps the outcome to
/// an exit status (0 or 1; 128 + the signal for [`Interrupted`], after
/// `PROG: ` and its message).
pub fn finish(prog: &str, outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            let i = e.downcast_ref::<Interrupted>().expect("checked");
            eprintln!("{prog}: {}", i.message);
            ExitCode::from((128 + i.signal).clamp(0, 255) as u8)
        }
        Err(e) => {
            let text = e.to_string().replace('\n', "; ");
            eprintln!("{prog}: error: {text}");
            ExitCode::FAILURE
        }
    }
}
