//! payment-service's HTTP API. Errors are problems ([`silo_kit::error`]); this
//! service's own types are [`PROBLEM_TYPES`].

use crate::charging::{Charging, ChargingError};
use crate::payment::Payment;
use crate::store::StoreError;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;
use silo_kit::auth::{AuthUser, TokenVerifier};
use silo_kit::correlation::CorrelationId;
use silo_kit::error::{ApiError, ProblemType};
use silo_kit::extract::{Json, Path, Query};
use silo_kit::fields::{FromQuery, QueryFields};
use uuid::Uuid;

/// 409: only a `FAILED` payment of a booking still `PENDING` can be retried.
pub const PAYMENT_NOT_RETRYABLE: ProblemType = ProblemType::new(
    "payment-not-retryable",
    "Payment cannot be retried",
    StatusCode::CONFLICT,
);

/// The problem types of payment-service beyond the kit's [`ProblemType::SHARED`].
pub const PROBLEM_TYPES: &[ProblemType] = &[PAYMENT_NOT_RETRYABLE];

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The payment logic and its store.
    pub charging: Charging,
    /// Verifies bearer tokens against user-service's keys.
    pub verifier: TokenVerifier,
}

impl FromRef<ApiState> for TokenVerifier {
    fn from_ref(state: &ApiState) -> Self {
        state.verifier.clone()
    }
}

/// The payment routes (health, metrics and limits are added by the caller).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/payments", get(find_payments))
        .route("/api/payments/{id}", get(get_payment))
        .route("/api/payments/{id}/retry", post(retry_payment))
        .route("/openapi.json", silo_kit::openapi::serve(&openapi()))
}

/// The handlers and types the OpenAPI description is generated from.
#[derive(utoipa::OpenApi)]
#[openapi(paths(find_payments, get_payment, retry_payment))]
struct ApiDoc;

/// payment-service's OpenAPI 3.1 description (`GET /openapi.json`,
/// `docs/openapi/payment-service.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    silo_kit::openapi::complete(
        <ApiDoc as utoipa::OpenApi>::openapi(),
        crate::startup::SERVICE.name,
        PROBLEM_TYPES,
    )
}

fn store_failure(error: StoreError) -> ApiError {
    ApiError::internal(error)
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("There is no payment {id} you may see."))
}

/// The payment if the caller may see it (its user or an admin); 404 otherwise.
async fn visible_payment(
    state: &ApiState,
    caller: &AuthUser,
    id: Uuid,
) -> Result<Payment, ApiError> {
    match state
        .charging
        .store()
        .get(id)
        .await
        .map_err(store_failure)?
    {
        Some(payment) if caller.may_access(payment.user_id) => Ok(payment),
        _ => Err(not_found(id)),
    }
}

/// A payment, to its user or an admin.
#[utoipa::path(get, path = "/api/payments/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 404, description = "`not-found`: no payment with this id that the caller may see"),
    ))]
async fn get_payment(
    State(state): State<ApiState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    visible_payment(&state, &caller, id).await.map(Json)
}

/// Query of `GET /api/payments`: `bookingId` (required).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FindQuery {
    /// The booking whose payment to find.
    #[param(rename = "bookingId")]
    booking_id: Uuid,
}

impl FromQuery for FindQuery {
    const PARAMETERS: &'static [&'static str] = &["bookingId"];

    fn from_query(query: &mut QueryFields) -> Option<Self> {
        Some(Self {
            booking_id: query.required("bookingId")?,
        })
    }
}

/// The payments matching a query (a booking has at most one).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PaymentList {
    items: Vec<Payment>,
}

/// The payment of a booking, as a list (empty when there is none the caller may see).
#[utoipa::path(get, path = "/api/payments", tag = "payments", security(("bearer" = [])),
    params(FindQuery),
    responses((status = 200, description = "`{items}`: at most one payment", body = PaymentList)))]
async fn find_payments(
    State(state): State<ApiState>,
    caller: AuthUser,
    Query(query): Query<FindQuery>,
) -> Result<Json<PaymentList>, ApiError> {
    let booking_id = query.booking_id;
    let found = state
        .charging
        .store()
        .find_by_booking(booking_id)
        .await
        .map_err(store_failure)?;
    let items = found
        .into_iter()
        .filter(|p| caller.may_access(p.user_id))
        .collect();
    Ok(Json(PaymentList { items }))
}

/// Charges a `FAILED` payment of a still-`PENDING` booking again.
#[utoipa::path(post, path = "/api/payments/{id}/retry", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment after the new attempt", body = Payment),
        (status = 404, description = "`not-found`: no payment with this id that the caller may see"),
        (status = 409, description = "`payment-not-retryable`: not `FAILED`, or its booking is no longer `PENDING`"),
    ))]
async fn retry_payment(
    State(state): State<ApiState>,
    caller: AuthUser,
    correlation: CorrelationId,
    Path(id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    visible_payment(&state, &caller, id).await?;
    match state.charging.retry(id, correlation.as_str()).await {
        Ok(payment) => Ok(Json(payment)),
        Err(ChargingError::Store(StoreError::Conflict(message))) => {
            Err(ApiError::new(PAYMENT_NOT_RETRYABLE, message))
        }
        Err(ChargingError::Store(StoreError::NotFound(_))) => Err(not_found(id)),
        Err(other) => Err(ApiError::internal(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_is_documented() {
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/services.md"
        ))
        .unwrap();
        let missing = silo_kit::error::undocumented(PROBLEM_TYPES, &docs);
        assert!(
            missing.is_empty(),
            "docs/services.md does not list {missing:?}"
        );
    }

    #[test]
    fn every_route_is_in_the_openapi_description() {
        let problems = silo_kit::openapi::description_problems(
            &routes(),
            &openapi(),
            "GET /api/payments/{id}",
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn request_schemas_match_what_the_readers_accept() {
        let mismatch = silo_kit::openapi::query_parameters_mismatch::<FindQuery>();
        assert_eq!(mismatch, Vec::<String>::new());
    }

    #[test]
    fn the_committed_openapi_description_is_current() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi/payment-service.json"
        ));
        if let Some(stale) = silo_kit::openapi::stale_file(&openapi(), path) {
            panic!("{stale}");
        }
    }
}
