//! The API inventory: which endpoints each service serves and calls, learnt from traffic.
//! `segment` classifies path segments and `template` turns paths into route templates.

pub mod segment;
pub mod template;
