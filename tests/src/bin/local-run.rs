//! The local run: drives custom resources through a whole stack lifecycle on this machine,
//! with nothing but loopback servers, and prints what happened.

fn main() {}
