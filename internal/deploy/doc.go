// Package deploy holds the checks of the repository's deployment files:
// docker-compose.yml, Dockerfile and .dockerignore at the root.
//
// No container engine runs where the tests do, so the tests load the
// compose file with the Compose specification's own loader (schema
// validation, interpolation, normalisation of short and long syntax) and
// parse the Dockerfile line by line, then check the wiring: pinned images,
// health checks, start order, the connection strings licensed receives, the
// ports, volumes and the non-root user. Every check is shown to fail on a
// broken copy of the files.
package deploy
