//! (tests for this area land with its issue)
