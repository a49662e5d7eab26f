//! What `authgate dev` and the tests run against, compiled only with the cargo feature `dev` (on
//! by default; the container image and `--no-default-features` builds leave it out, fake keys
//! and all): faithful fakes of the identity providers we cannot reach from a test, and the demo
//! upstream.
//!
//! | file | holds |
//! |---|---|
//! | `fake_kakao.rs` | Kakao Login: authorize page, token, user info, OpenID Connect (`docs/providers.md`) |
//! | `fake_kakao_webhooks.rs` | Kakao's unlink and account-status webhooks, sent as Kakao sends them |
//! | `fake_oidc.rs` | any OpenID Connect issuer: discovery, JWKS with rotation, RFC 9207 |
//! | `fake_naver.rs` | Naver Login |
//! | `fakes.rs` | what the fakes share: serving, reading a request, faults, the redirect back |
//! | `demo.rs` | the demo upstream that shows the headers it received |
//! | `fake_keys/` | the fakes' public test signing keys |

pub mod demo;
pub mod fake_kakao;
pub mod fake_kakao_webhooks;
pub mod fake_naver;
pub mod fake_oidc;
mod fakes;
