//! How each built-in policy is spelled in a name: its kind, its keys and an
//! example. What both the parser and the parser's errors know.

/// The spelling of one policy's name.
#[derive(Debug)]
pub(crate) struct Spelling {
    pub(crate) name: &'static str,
    /// Every key this policy accepts, in canonical order.
    pub(crate) keys: &'static [&'static str],
    pub(crate) example: &'static str,
}

/// The five built-in policies, in the order of `Policy`'s variants.
pub(crate) const SPELLINGS: [Spelling; 5] = [
    Spelling {
        name: "fixed",
        keys: &["size", "continue"],
        example: "fixed:size=30",
    },
    Spelling {
        name: "sliding",
        keys: &["window", "stride"],
        example: "sliding:window=28,stride=7",
    },
    Spelling {
        name: "left-context",
        keys: &["chunk", "context"],
        example: "left-context:chunk=10,context=2",
    },
    Spelling {
        name: "ramp",
        keys: &["first", "size", "growth", "max", "continue"],
        example: "ramp:first=4,size=8,growth=2,max=32",
    },
    Spelling {
        name: "scheduled",
        keys: &["schedule", "chunk", "context", "prime"],
        example: "scheduled:schedule=4/8/16,chunk=25,context=25",
    },
];

impl Spelling {
    pub(crate) fn named(name: &str) -> Option<&'static Spelling> {
        SPELLINGS.iter().find(|s| s.name == name)
    }
}
