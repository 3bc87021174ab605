app-name = tokengate
lang-switch = Português
nav-security = Security
nav-tokens = API tokens
nav-instances = Instances
nav-oauth = OAuth clients
nav-usage = Usage
nav-audit = Audit log
nav-2fa = Two-factor login
logout = Log out
signed-in-as = Signed in as { $email } ({ $role })

login-title = Log in
login-email = Email
login-password = Password
login-submit = Log in
login-failed = Wrong email or password.
login-locked = Too many failed attempts. Try again in a few minutes.
otp-title = One-time code
otp-help = Enter the 6-digit code from your authenticator app.
otp-code = Code
otp-submit = Verify
otp-failed = That code is not valid.

security-title = Security
security-token-title = Account Security Token
security-token-intro = When active, every instance of this account only accepts requests that carry the Client-Token header with this token.
status = Status
status-none = Not configured
status-disabled = Disabled
status-active = Active
configure-now = Configure now
token-once-title = Your new token
token-once-warning = Store it now: it will not be shown again.
copy = Copy
copied = Copied
activate-token = Activate Token
deactivate-token = Deactivate
rotate-token = Rotate
grace-seconds = Grace period (seconds)
confirm = Confirm
cancel = Cancel
activate-confirm-question = Recent requests arrived without this token. They will be refused once it is active. Activate anyway?
activated = The token is active.
deactivated = The token is disabled.
readiness-title = Readiness
readiness-window = Requests since the token was created (up to the last { $hours } hours)
readiness-valid = With the valid token
readiness-missing = Without a token
readiness-invalid = With a wrong token
readiness-safe = Every recent request carries the token: activating is safe.
readiness-unsafe = Some recent requests do not carry the token yet.
readiness-empty = No requests seen yet.
chart-requests = requests
chart-hour = hour (UTC)
created-at = Created
activated-at = Activated
previous-valid-until = Previous token valid until

tokens-title = API tokens
tokens-create = Create a token
token-name = Name
token-kind = Kind
kind-api_key = API key
kind-personal = Personal token
token-scopes = Scopes (separated by spaces)
token-expires = Expires in (days, empty = never)
token-ip = IP allowlist (CIDRs, separated by spaces)
token-rate = Rate limit (requests per minute, empty = none)
token-create-submit = Create
token-last-used = Last used
token-expires-at = Expires
token-revoked-at = Revoked
token-revoke = Revoke
token-rotate = Rotate
token-revoked = The token was revoked.
never = never
none = none
actions = Actions

instances-title = Instances
instance-name = Name
instance-upstream = Upstream
instance-rules = Route rules

oauth-title = OAuth clients
oauth-create = Create a client
oauth-client-id = Client ID
oauth-secret-once = Client secret (shown once)

usage-title = Usage
usage-account = Requests to this account's instances, last 24 hours
usage-allowed = Allowed
usage-rejected = Rejected
usage-token = Requests with token { $name }

audit-title = Audit log
audit-at = When
audit-actor = Who
audit-action = Action
audit-target = Object
audit-ip = Address

twofa-title = Two-factor login
twofa-on = Two-factor login is on.
twofa-off = Two-factor login is off.
twofa-scan = Scan this code with an authenticator app, or enter the key by hand, then type the code it shows.
twofa-key = Key
twofa-enable = Turn on
twofa-disable = Turn off
twofa-bad-code = That code is not valid; scan again and retry.

error-title = Something went wrong
error-forbidden = Your role does not allow this.
error-csrf = The form expired. Reload the page and try again.
error-invalid = { $message }
back = Back
no-items = Nothing here yet.
