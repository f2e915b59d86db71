//! The sidecore front end under threads.
