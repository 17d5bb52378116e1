#!/usr/bin/env python3
"""Drives the booking system's saga through its HTTP APIs and reports what happened, as JSON.

Registers users, logs them in, books (some bookings above the payment-service's decline
threshold), waits until every booking is final, then changes one user's email and waits until
booking-service's and payment-service's copies of it show the new address. Progress goes to
stderr, one line per step; the JSON report to stdout; the exit code is 0 only when every booking
ended as expected and the email change reached both copies.

    saga.py --user URL --booking URL --payment URL --run-id ID [--users N]
            [--bookings-per-user M] [--decline-every K] [--decline-above AMOUNT]
            [--timeout SECONDS] [--no-email-change]

Saga latency is measured by the services' own clocks: from a booking's `createdAt` to its
`updatedAt` when it is first seen final, so the polling interval does not add to it.
Standard library only (the test machines have no third-party Python packages).
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import sys
import time
import urllib.error
import urllib.request

PASSWORD = "e2e-password-not-secret"
FINAL = ("CONFIRMED", "CANCELLED")


def progress(message):
    print(f"    {message}", file=sys.stderr, flush=True)


class ApiError(Exception):
    """An HTTP answer other than the one expected, or no answer."""


def call(method, url, body=None, token=None, expect=(200,)):
    """Sends one request and returns the decoded JSON answer; raises ApiError otherwise."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    except OSError as error:
        raise ApiError(f"{method} {url}: {error}") from error
    if status not in expect:
        raise ApiError(f"{method} {url}: HTTP {status}: {text[:300]}")
    return json.loads(text) if text else None


def timestamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def percentile(values, fraction):
    """The nearest-rank percentile of values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[rank - 1]


class Saga:
    def __init__(self, args):
        self.args = args
        self.user_url = args.user.rstrip("/")
        self.booking_url = args.booking.rstrip("/")
        self.payment_url = args.payment.rstrip("/")

    def register_and_login(self, index):
        name = f"{self.args.run_id}u{index}".replace("-", "")
        user = {
            "username": name,
            "email": f"{name}@example.com",
            "password": PASSWORD,
            "fullName": f"E2E User {index}",
        }
        call("POST", f"{self.user_url}/api/users/register", user, expect=(201,))
        session = call(
            "POST",
            f"{self.user_url}/api/users/login",
            {"username": name, "password": PASSWORD},
        )
        return {"name": name, "id": session["user"]["id"], "token": session["token"],
                "email": user["email"]}

    def book(self, user, amount, expected):
        order = {"eventName": f"E2E {self.args.run_id}", "ticketCount": 1, "totalAmount": amount}
        booking = call("POST", f"{self.booking_url}/api/bookings", order, user["token"],
                       expect=(201,))
        return {"id": booking["id"], "user": user["name"], "token": user["token"],
                "amount": amount, "expected": expected, "status": booking["status"]}

    def wait_final(self, booking, deadline):
        """Polls the booking until it is final (or the deadline passes); records its latency."""
        while True:
            current = call("GET", f"{self.booking_url}/api/bookings/{booking['id']}",
                           token=booking["token"])
            if current["status"] in FINAL:
                booking["status"] = current["status"]
                booking["latencySeconds"] = round(
                    (timestamp(current["updatedAt"]) - timestamp(current["createdAt"]))
                    .total_seconds(), 3)
                if current.get("cancellationReason"):
                    booking["reason"] = current["cancellationReason"]
                return booking
            if time.monotonic() > deadline:
                booking["status"] = current["status"]
                return booking
            time.sleep(0.2)

    def email_copies(self, user, bookings):
        """The email booking-service and payment-service hold for the user's bookings."""
        seen = {"booking": set(), "payment": set()}
        for booking in bookings:
            current = call("GET", f"{self.booking_url}/api/bookings/{booking['id']}",
                           token=user["token"])
            seen["booking"].add(current["userEmail"])
            payments = call("GET", f"{self.payment_url}/api/payments?bookingId={booking['id']}",
                            token=user["token"])
            for payment in payments["items"]:
                seen["payment"].add(payment.get("userEmail"))
        return seen

    def change_email(self, user, bookings, deadline):
        """Changes the user's email; returns how long each copy took to show the new one."""
        new_email = f"{user['name']}.changed@example.com"
        result = {"user": user["name"], "old": user["email"], "new": new_email}
        before = self.email_copies(user, bookings)
        result["before"] = {k: sorted(v, key=str) for k, v in before.items()}
        started = time.monotonic()
        call("PATCH", f"{self.user_url}/api/users/{user['id']}", {"email": new_email},
             user["token"])
        pending = {"booking", "payment"}
        while pending:
            seen = self.email_copies(user, bookings)
            for copy in list(pending):
                if seen[copy] == {new_email}:
                    result[f"{copy}Seconds"] = round(time.monotonic() - started, 3)
                    pending.discard(copy)
            if pending and time.monotonic() > deadline:
                result["stale"] = {copy: sorted(seen[copy], key=str) for copy in pending}
                break
            if pending:
                time.sleep(0.2)
        result["reached"] = not pending
        return result

    def run(self):
        args = self.args
        report = {"runId": args.run_id, "declineAbove": args.decline_above}
        started = time.monotonic()
        workers = min(8, max(1, args.users * args.bookings_per_user))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            users = list(pool.map(self.register_and_login, range(1, args.users + 1)))
            progress(f"{len(users)} user(s) registered and logged in through user-service")
            orders = []
            declined_amount = f"{float(args.decline_above) + 1:.2f}"
            for number in range(args.users * args.bookings_per_user):
                user = users[number % len(users)]
                declined = args.decline_every > 0 and (number + 1) % args.decline_every == 0
                amount = declined_amount if declined else f"{50 + 10 * (number % 7)}.00"
                orders.append((user, amount, "CANCELLED" if declined else "CONFIRMED"))
            bookings = list(pool.map(lambda order: self.book(*order), orders))
            declined_count = sum(1 for b in bookings if b["expected"] == "CANCELLED")
            progress(f"{len(bookings)} booking(s) created through booking-service "
                     f"({declined_count} above the decline threshold {args.decline_above})")
            deadline = time.monotonic() + args.timeout
            bookings = list(pool.map(lambda b: self.wait_final(b, deadline), bookings))
        counts = {status: sum(1 for b in bookings if b["status"] == status)
                  for status in ("CONFIRMED", "CANCELLED", "PENDING")}
        progress(f"{len(bookings)} saga(s) run: {counts['CONFIRMED']} CONFIRMED, "
                 f"{counts['CANCELLED']} CANCELLED (declined), {counts['PENDING']} still PENDING")
        latencies = [b["latencySeconds"] for b in bookings if "latencySeconds" in b]
        report.update({
            "users": len(users),
            "bookings": [{k: v for k, v in b.items() if k != "token"} for b in bookings],
            "confirmed": counts["CONFIRMED"],
            "cancelled": counts["CANCELLED"],
            "pending": counts["PENDING"],
            "unexpected": [b["id"] for b in bookings if b["status"] != b["expected"]],
            "latency": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                        "max": max(latencies) if latencies else None},
        })
        if not args.no_email_change:
            user = users[0]
            mine = [b for b in bookings if b["user"] == user["name"]]
            email = self.change_email(user, mine, time.monotonic() + args.timeout)
            report["email"] = email
            if email["reached"]:
                progress(f"email of {user['name']} changed: booking-service's copy updated after "
                         f"{email['bookingSeconds']} s, payment-service's after "
                         f"{email['paymentSeconds']} s")
            else:
                progress(f"email of {user['name']} changed, but stale copies remain: "
                         f"{email['stale']}")
        report["seconds"] = round(time.monotonic() - started, 1)
        report["ok"] = not report["unexpected"] and report.get("email", {"reached": True})["reached"]
        return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", required=True, help="base URL of user-service")
    parser.add_argument("--booking", required=True, help="base URL of booking-service")
    parser.add_argument("--payment", required=True, help="base URL of payment-service")
    parser.add_argument("--run-id", required=True,
                        help="makes user names unique: <run-id>u<n> (letters and digits)")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--bookings-per-user", type=int, default=2)
    parser.add_argument("--decline-every", type=int, default=2,
                        help="every K-th booking asks for more than --decline-above (0: none)")
    parser.add_argument("--decline-above", default="10000",
                        help="payment-service's PAYMENT_DECLINE_ABOVE")
    parser.add_argument("--timeout", type=float, default=90,
                        help="seconds to wait for the sagas, and again for the email copies")
    parser.add_argument("--no-email-change", action="store_true")
    args = parser.parse_args()
    try:
        report = Saga(args).run()
    except ApiError as error:
        progress(f"FAILED: {error}")
        json.dump({"ok": False, "error": str(error)}, sys.stdout)
        print()
        return 1
    json.dump(report, sys.stdout)
    print()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
