//! The checks that keep the saga log's step names to the declared ones, rewritten whole by
//! each migration that adds or retires names.

/// The statements that check `saga`, `saga_step` and `saga_timer` rows name one of `steps`
/// (quoted, comma-separated).
pub fn checks(steps: &str) -> String {
    format!(
        "ALTER TABLE saga DROP CONSTRAINT saga_step_known,
            ADD CONSTRAINT saga_step_known CHECK (step IN ({steps}));
        ALTER TABLE saga_step DROP CONSTRAINT saga_step_step_known,
            ADD CONSTRAINT saga_step_step_known CHECK (step IN ({steps}));
        ALTER TABLE saga_timer DROP CONSTRAINT saga_timer_step_known,
            ADD CONSTRAINT saga_timer_step_known CHECK (step IN ({steps}));"
    )
}
