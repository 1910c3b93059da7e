"""The REST gateway: HTTP surfaces transcoded to the services' gRPC APIs (see app.create_app)."""
