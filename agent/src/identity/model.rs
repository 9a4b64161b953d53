//! Who an end of a call is: the model lives with the call (`crate::call::identity`), where
//! every stage reads it; this stage fills it.

pub use crate::call::identity::*;
