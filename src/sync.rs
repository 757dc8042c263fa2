//! One run of one connector: source → format → mapping → plan → platform → state.
//! The only module that knows every stage.
