//! Wrapper rules: Independent, Masked, Expanded, point masses; dispatch errors.
