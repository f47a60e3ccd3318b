"""The official `openai` Python SDK against Sluice: a streamed chat completion (plain iteration and
the `stream()` helper's `get_final_completion()`), and the same request not streamed. Prints JSON
for test/api/python-sdk.test.ts to assert on."""
import json
import os

from openai import LengthFinishReasonError, OpenAI

client = OpenAI(api_key=os.environ["SLUICE_KEY"], base_url=os.environ["SLUICE_BASE_URL"], max_retries=0)
body = dict(model="sluice-tiny", messages=[{"role": "user", "content": "Python streams too"}], max_tokens=24, temperature=0, seed=11)

plain = client.chat.completions.create(**body)
chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
try:
    with client.chat.completions.stream(**body) as stream:
        final = stream.get_final_completion()
except LengthFinishReasonError as cut:
    # The helper refuses to "parse" a completion cut at max_tokens, but carries what it accumulated.
    final = cut.completion

print(json.dumps({
    "plain": plain.choices[0].message.content,
    "joined": "".join((c.choices[0].delta.content or "") for c in chunks if c.choices),
    "first_role": chunks[0].choices[0].delta.role,
    "objects": sorted({c.object for c in chunks}),
    "finish": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
    "id": chunks[0].id,
    "final": final.choices[0].message.content,
}))
