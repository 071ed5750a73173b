-- The PostgreSQL role and database DATABASE_URL names, created or brought in line with .env.
-- Run by deploy/install.sh as the postgres superuser; safe to run again (an upgrade does):
--   DB_PASSWORD=... psql -X -v ON_ERROR_STOP=1 -v role=messaging -v db=messaging -f database.sql
-- The password comes from the environment (\getenv, psql 15+), never from a command line.
\getenv password DB_PASSWORD
\if :{?password}
\else
DO $$ BEGIN RAISE EXCEPTION 'DB_PASSWORD is not set: the installer passes the password of .env'; END $$;
\endif
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
-- .env is the source of truth: a re-run sets the role's password to the one in .env. The
-- statement carries the password: keep it out of the server log (log_statement, or an error).
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
RESET log_statement;
RESET log_min_error_statement;
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
