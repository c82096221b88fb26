"""Data model, ingestion, id vocabularies, interaction matrices and synthetic data."""
