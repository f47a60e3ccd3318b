"""The official `openai` Python SDK against Sluice's Responses API: `responses.create` (then
`retrieve` and a chained create with `previous_response_id`), and `responses.stream()`'s events and
`get_final_response()`. Prints JSON for test/api/python-sdk.test.ts to assert on."""
import json
import os

from openai import OpenAI

client = OpenAI(api_key=os.environ["SLUICE_KEY"], base_url=os.environ["SLUICE_BASE_URL"], max_retries=0)
body = dict(model="sluice-tiny", max_output_tokens=12, temperature=0)

first = client.responses.create(input="Python asks first", instructions="Be brief", **body)
retrieved = client.responses.retrieve(first.id)
chained = client.responses.create(input="and then?", previous_response_id=first.id, **body)

types = []
incomplete = None
deltas = []
with client.responses.stream(input="Python streams a response", **body) as stream:
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.incomplete":
            # Cut at max_output_tokens (the tiny model rarely stops first): as with OpenAI, the helper
            # keeps a final response for `response.completed` only; the event carries the response.
            incomplete = event.response
    final = stream.get_final_response() if types[-1] == "response.completed" else incomplete

print(json.dumps({
    "first": first.model_dump(mode="json"),
    "retrieved": retrieved.model_dump(mode="json"),
    "first_text": first.output_text,
    "chained_previous": chained.previous_response_id,
    "chained_input_tokens": chained.usage.input_tokens,
    "types": types,
    "joined": "".join(deltas),
    "final_text": final.output_text,
    "final_id": final.id,
    "final_usage": final.usage.model_dump(mode="json"),
}))
