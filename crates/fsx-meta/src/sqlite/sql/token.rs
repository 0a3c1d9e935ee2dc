//! The `tokens` family's statements.

use crate::logic::tokens::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::InsertToken => {
            "INSERT INTO fsx_tokens (id, label, scope, secret_hash, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING"
        }
        Q::Tokens => {
            "SELECT id, label, scope, created_ms, revoked_ms FROM fsx_tokens
             ORDER BY created_ms, id"
        }
        Q::Token => {
            "SELECT id, label, scope, secret_hash, created_ms, revoked_ms FROM fsx_tokens
             WHERE id = ?1"
        }
        Q::RevokeToken => {
            "UPDATE fsx_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL"
        }
        Q::TokenExists => "SELECT 1 FROM fsx_tokens WHERE id = ?1",
    }
}
