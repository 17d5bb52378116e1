//! booking-service's HTTP API. Errors are problems ([`silo_kit::error`]); this
//! service's own types are [`PROBLEM_TYPES`].

use crate::booking::{Booking, BookingStatus};
use crate::cursor::Cursor;
use crate::new_booking::NewBooking;
use crate::repository::{BookingRepository, Cancellation, KnownUser, ListFilter, RepositoryError};
use crate::users::{UserProfile, UserServiceClient, UserServiceError};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use silo_kit::auth::{AuthUser, TokenVerifier};
use silo_kit::correlation::CorrelationId;
use silo_kit::error::{ApiError, ProblemType};
use silo_kit::extract::{Json, Path, Query};
use silo_kit::fields::{FromQuery, QueryFields};
use uuid::Uuid;

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
const MAX_LIMIT: u32 = 100;

/// 422: the token is valid but its user does not exist (user-service says so).
pub const UNKNOWN_USER: ProblemType = ProblemType::new(
    "unknown-user",
    "Unknown user",
    StatusCode::UNPROCESSABLE_ENTITY,
);
/// 503: the caller is not known locally yet and user-service cannot be asked.
pub const USER_SERVICE_UNAVAILABLE: ProblemType = ProblemType::new(
    "user-service-unavailable",
    "User service unavailable",
    StatusCode::SERVICE_UNAVAILABLE,
);
/// 409: only a `PENDING` booking can be cancelled.
pub const BOOKING_NOT_PENDING: ProblemType = ProblemType::new(
    "booking-not-pending",
    "Booking is not pending",
    StatusCode::CONFLICT,
);

/// The problem types of booking-service beyond the kit's [`ProblemType::SHARED`].
pub const PROBLEM_TYPES: &[ProblemType] =
    &[UNKNOWN_USER, USER_SERVICE_UNAVAILABLE, BOOKING_NOT_PENDING];

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The service's database.
    pub repository: BookingRepository,
    /// user-service, for existence checks and profiles.
    pub users: UserServiceClient,
    /// Verifies bearer tokens against user-service's keys.
    pub verifier: TokenVerifier,
}

impl FromRef<ApiState> for TokenVerifier {
    fn from_ref(state: &ApiState) -> Self {
        state.verifier.clone()
    }
}

/// The booking routes (health, metrics and limits are added by the caller).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/bookings", post(create_booking).get(list_bookings))
        .route("/api/bookings/{id}", get(get_booking))
        .route("/api/bookings/{id}/details", get(booking_details))
        .route("/api/bookings/{id}/cancel", post(cancel_booking))
        .route("/openapi.json", silo_kit::openapi::serve(&openapi()))
}

/// The handlers and types the OpenAPI description is generated from.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_booking,
    list_bookings,
    get_booking,
    booking_details,
    cancel_booking
))]
struct ApiDoc;

/// booking-service's OpenAPI 3.1 description (`GET /openapi.json`,
/// `docs/openapi/booking-service.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    silo_kit::openapi::complete(
        <ApiDoc as utoipa::OpenApi>::openapi(),
        crate::startup::SERVICE.name,
        PROBLEM_TYPES,
    )
}

fn internal(error: RepositoryError) -> ApiError {
    ApiError::internal(error)
}

/// The caller's bearer token (already verified by [`AuthUser`]), forwarded to user-service.
fn bearer_token(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| token.trim())
        .unwrap_or_default()
}

/// The caller as user-service knows them (for a caller the local replica does not know yet),
/// remembered in the replica.
async fn fetch_user(
    state: &ApiState,
    caller: &AuthUser,
    token: &str,
) -> Result<KnownUser, ApiError> {
    let unreachable = |e: UserServiceError| {
        tracing::warn!(error = %e, "user existence check failed");
        ApiError::new(
            USER_SERVICE_UNAVAILABLE,
            "Cannot verify the user: user-service is unreachable and the user is not known \
             locally yet; retry shortly.",
        )
    };
    let exists = state
        .users
        .exists(caller.id, token)
        .await
        .map_err(unreachable)?;
    let profile = if exists {
        state
            .users
            .profile(caller.id, token)
            .await
            .map_err(unreachable)?
    } else {
        None
    };
    let Some(profile) = profile else {
        return Err(ApiError::new(
            UNKNOWN_USER,
            "The token's user does not exist in user-service.",
        ));
    };
    let known = KnownUser {
        user_id: profile.id,
        email: profile.email,
        full_name: Some(profile.full_name),
    };
    state
        .repository
        .cache_user(&known)
        .await
        .map_err(internal)?;
    Ok(known)
}

/// Books for the token's user; the saga then charges the payment.
#[utoipa::path(post, path = "/api/bookings", tag = "bookings", security(("bearer" = [])),
    request_body = NewBooking,
    responses(
        (status = 201, description = "Created `PENDING`; emits `BookingCreated`", body = Booking,
            headers(("Location" = String, description = "/api/bookings/{id}"))),
        (status = 422, description = "`unknown-user`: user-service says the token's user does not exist"),
        (status = 503, description = "`user-service-unavailable`: the user is not known locally yet and user-service is unreachable"),
    ))]
async fn create_booking(
    State(state): State<ApiState>,
    caller: AuthUser,
    correlation: CorrelationId,
    headers: HeaderMap,
    Json(new): Json<NewBooking>,
) -> Result<Response, ApiError> {
    // The local replica first (its email copied by the insert itself), else user-service.
    let stored = state
        .repository
        .create_for_known_user(caller.id, &new, &correlation)
        .await
        .map_err(internal)?;
    let booking = match stored {
        Some(booking) => booking,
        None => {
            let user = fetch_user(&state, &caller, bearer_token(&headers)).await?;
            state
                .repository
                .create(caller.id, &user.email, &new, &correlation)
                .await
                .map_err(internal)?
        }
    };
    let location = HeaderValue::from_str(&format!("/api/bookings/{}", booking.id))
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(booking),
    )
        .into_response())
}

/// The booking if the caller may see it; 404 otherwise (existence is not revealed).
async fn visible_booking(
    state: &ApiState,
    caller: &AuthUser,
    id: Uuid,
) -> Result<Booking, ApiError> {
    match state.repository.get(id).await.map_err(internal)? {
        Some(booking) if caller.may_access(booking.user_id) => Ok(booking),
        _ => Err(ApiError::not_found(format!(
            "There is no booking {id} you may see."
        ))),
    }
}

/// A booking, to its owner or an admin.
#[utoipa::path(get, path = "/api/bookings/{id}", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "The booking", body = Booking),
        (status = 404, description = "`not-found`: no booking with this id that the caller may see"),
    ))]
async fn get_booking(
    State(state): State<ApiState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Booking>, ApiError> {
    visible_booking(&state, &caller, id).await.map(Json)
}

/// Query of `GET /api/bookings`, validated; every parameter at fault is reported at once.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Whose bookings (default: the caller's; admins: everyone's); another user's is for admins.
    #[param(rename = "userId")]
    user_id: Option<Uuid>,
    /// Only bookings in this status (any case).
    #[param(value_type = Option<BookingStatus>)]
    status: Option<BookingStatus>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: u32,
    /// The `nextCursor` of the previous page.
    #[param(rename = "cursor", value_type = Option<String>)]
    after: Option<Cursor>,
}

impl FromQuery for ListQuery {
    const PARAMETERS: &'static [&'static str] = &["userId", "status", "limit", "cursor"];

    fn from_query(query: &mut QueryFields) -> Option<Self> {
        let user_id = query.optional("userId");
        let status = query.optional_with("status", |raw: String| {
            BookingStatus::parse(&raw.to_ascii_uppercase())
                .ok_or_else(|| "status must be PENDING, CONFIRMED or CANCELLED".to_string())
        });
        let limit = query.optional_with("limit", |limit: u32| {
            (1..=MAX_LIMIT)
                .contains(&limit)
                .then_some(limit)
                .ok_or_else(|| format!("limit must be between 1 and {MAX_LIMIT}"))
        });
        let after = query.optional_with("cursor", |raw: String| {
            Cursor::decode(&raw).map_err(|e| e.to_string())
        });
        Some(Self {
            user_id,
            status,
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            after,
        })
    }
}

/// A page of bookings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct BookingPage {
    items: Vec<Booking>,
    next_cursor: Option<String>,
}

/// The caller's bookings (an admin's: anyone's), newest first, a page at a time.
#[utoipa::path(get, path = "/api/bookings", tag = "bookings", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page; `nextCursor` is null on the last", body = BookingPage),
        (status = 403, description = "`forbidden`: `userId` of another user, and the caller is no admin"),
    ))]
async fn list_bookings(
    State(state): State<ApiState>,
    caller: AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<BookingPage>, ApiError> {
    let user_id = match query.user_id {
        Some(id) if id != caller.id && !caller.is_admin() => {
            return Err(ApiError::forbidden(
                "Only admins may list other users' bookings.",
            ));
        }
        Some(id) => Some(id),
        None if caller.is_admin() => None,
        None => Some(caller.id),
    };
    let page = state
        .repository
        .list(&ListFilter {
            user_id,
            status: query.status,
            limit: query.limit,
            after: query.after,
        })
        .await
        .map_err(internal)?;
    Ok(Json(BookingPage {
        items: page.items,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// The booking composed with its user's live profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct BookingDetails {
    #[serde(flatten)]
    booking: Booking,
    user: Option<UserSummary>,
    degraded: bool,
}

/// The user fields shown with a booking.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserSummary {
    email: String,
    full_name: String,
}

/// A booking with its user's profile from user-service (`degraded` when unavailable).
#[utoipa::path(get, path = "/api/bookings/{id}/details", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "The booking, `user` and `degraded`", body = BookingDetails),
        (status = 404, description = "`not-found`: no booking with this id that the caller may see"),
    ))]
async fn booking_details(
    State(state): State<ApiState>,
    caller: AuthUser,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingDetails>, ApiError> {
    let booking = visible_booking(&state, &caller, id).await?;
    let token = bearer_token(&headers);
    let user = match state.users.profile(booking.user_id, token).await {
        Ok(Some(UserProfile {
            email, full_name, ..
        })) => Some(UserSummary { email, full_name }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, booking_id = %id, "user profile unavailable; degraded details");
            None
        }
    };
    let degraded = user.is_none();
    Ok(Json(BookingDetails {
        booking,
        user,
        degraded,
    }))
}

/// Cancels the caller's own `PENDING` booking.
#[utoipa::path(post, path = "/api/bookings/{id}/cancel", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "Cancelled; emits `BookingCancelled`", body = Booking),
        (status = 404, description = "`not-found`: no booking with this id that the caller owns"),
        (status = 409, description = "`booking-not-pending`: the booking is no longer `PENDING`"),
    ))]
async fn cancel_booking(
    State(state): State<ApiState>,
    caller: AuthUser,
    correlation: CorrelationId,
    Path(id): Path<Uuid>,
) -> Result<Json<Booking>, ApiError> {
    // Only the owner cancels; anyone else learns nothing about the booking.
    let owned = state.repository.get(id).await.map_err(internal)?;
    if !matches!(&owned, Some(b) if b.user_id == caller.id) {
        return Err(ApiError::not_found(format!(
            "There is no booking {id} you may see."
        )));
    }
    match state
        .repository
        .cancel(id, "cancelled by the user", &correlation)
        .await
        .map_err(internal)?
    {
        Cancellation::Cancelled(booking) => Ok(Json(booking)),
        Cancellation::NotPending(booking) => Err(ApiError::new(
            BOOKING_NOT_PENDING,
            format!(
                "Only a PENDING booking can be cancelled; this one is {}.",
                booking.status.as_str()
            ),
        )),
        Cancellation::NotFound => Err(ApiError::not_found(format!(
            "There is no booking {id} you may see."
        ))),
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
            "GET /api/bookings/{id}",
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn request_schemas_match_what_the_readers_accept() {
        use silo_kit::openapi::{body_fields_mismatch, query_parameters_mismatch};
        assert_eq!(body_fields_mismatch::<NewBooking>(), Vec::<String>::new());
        assert_eq!(
            query_parameters_mismatch::<ListQuery>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_committed_openapi_description_is_current() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi/booking-service.json"
        ));
        if let Some(stale) = silo_kit::openapi::stale_file(&openapi(), path) {
            panic!("{stale}");
        }
    }
}
