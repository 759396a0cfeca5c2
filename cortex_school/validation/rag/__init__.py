"""RAG validation: chunk the platform's docs, GitOps manifests, known issues and past
improvements, embed them offline, index them in Qdrant, and check proposals against them."""
