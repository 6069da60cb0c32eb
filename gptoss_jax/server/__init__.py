"""`gptoss serve`: an OpenAI-compatible HTTP server over the engine.

    app.py            the Starlette app: routes, API key, OpenAI error bodies, /health, /v1/models, /metrics
    chat_api.py       /v1/chat/completions: OpenAI body -> chat.ChatRequest -> engine; responses and SSE chunks
    responses_api.py  /v1/responses: input items, reasoning / message / function_call output items, SSE events
    completions_api.py  /v1/completions: raw prompts (text or token ids), no harmony
    params.py         the OpenAI sampling fields every API shares -> engine SamplingParams (validated)
    specs.py          what enters the engine as JSON any process can rebuild (multi-process jobs)
    harmony_stream.py completion tokens -> reasoning / answer / tool-call pieces, token by token; stop strings
    engine_loop.py    the engine on its own thread: submissions, cancellations, delivery to asyncio queues,
                      the per-round broadcast to the other processes of a multi-process job
    metrics.py        Prometheus metrics (own registry)
    serve.py          run it: uvicorn on process 0, the engine followers elsewhere, SIGTERM handling

It calls gptoss_jax.chat exactly as the CLI does (to_engine_request / from_engine_result); nothing below it imports
it. Prompt caching is the engine's (engine/prefix_cache.py); the server reports the cached tokens.
"""
