//! Enums whose variants have one fixed name each, written once: the name serde gives them
//! in reports (a contract, docs/report-schema.md) and the name tables and logs print are the
//! same string, so they cannot drift apart.

/// An enum of unit variants, each `Variant = "name"`. Derives Clone, Copy, Debug, PartialEq,
/// Eq, Hash and Serialize (as the name); adds `ALL` (declaration order), `name()` and a
/// `Display` that honours width (`{:<10}`). More derives go in the attributes.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $($(#[$vmeta:meta])* $variant:ident = $name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $enum {
            $($(#[$vmeta])* #[serde(rename = $name)] $variant,)*
        }

        impl $enum {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),*];

            /// Its name: the report's, and what tables and logs print.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

pub(crate) use named_enum;
