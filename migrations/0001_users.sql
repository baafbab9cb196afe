-- People who logged in through the identity provider (Keycloak in production).
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    keycloak_sub  text NOT NULL UNIQUE CHECK (length(keycloak_sub) BETWEEN 1 AND 255),
    email         text,
    name          text,
    username      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
