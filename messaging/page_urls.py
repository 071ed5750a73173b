# Filled in by its feature; an empty list keeps the project importable meanwhile.
urlpatterns: list = []
