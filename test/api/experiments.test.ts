/**
 * Experiments end to end on the real stack (Temporal, PostgreSQL, the API; the instant backend:
 * these are pipeline tests, not inference ones): create (draft) → start → requests from different
 * `user`s → feedback → results (per-variant counts equal what was sent) → promote (the model's
 * default changes, the experiment stops, audited). Also: paused and stopped experiments and a
 * traffic allocation of 0 assign nobody; an SRM case, exposures of one variant written past the
 * assignment (a targeting bug, simulated in SQL), is flagged untrustworthy; feedback is
 * idempotent, last write wins, and another tenant's completion is 404. Targeting by `metadata`:
 * only requests (chat, streamed chat, responses) whose metadata meets the rule are counted, and
 * the streamed ones' TTFT is in the results.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { addInstantModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { assignVariant } from '../../domain/experiment-assignment.js';

let stack: TestStack;
let tenantId: string;
let adminKey: string;
let devKey: string;
let userKey: string;
let other: { tenantId: string; key: string; adminKey: string };

async function call(key: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function tenantWithAdmin(): Promise<{ tenantId: string; adminKey: string }> {
  const t = await stack.admin('POST', '/v1/admin/tenants', { name: `exp-${Math.random().toString(36).slice(2, 8)}` });
  expect(t.status).toBe(201);
  const a = await stack.admin('POST', `/v1/admin/tenants/${t.body.id}/keys`, { role: 'tenant_admin' });
  expect(a.status).toBe(201);
  return { tenantId: t.body.id, adminKey: a.body.key };
}

async function keyOf(admin: string, tenant: string, role: string): Promise<string> {
  const k = await call(admin, 'POST', `/v1/admin/tenants/${tenant}/keys`, { role });
  expect(k.status, JSON.stringify(k.body)).toBe(201);
  return k.body.key;
}

/** A sync chat completion, returned once settled (its answer leaves first): the results below count settled requests. */
async function chat(key: string, model: string, user: string) {
  const r = await call(key, 'POST', '/v1/chat/completions', { model, user, messages: [{ role: 'user', content: 'hello' }], max_tokens: 12 });
  if (r.status === 200) await settled(stack, r.body);
  return r;
}

/** Sends one request per subject, a few at a time; every one must succeed. Returns the completions by subject. */
async function requestsFrom(key: string, model: string, subjects: readonly string[]): Promise<Map<string, any>> {
  const out = new Map<string, any>();
  for (let i = 0; i < subjects.length; i += 6) {
    const chunk = subjects.slice(i, i + 6);
    const answers = await Promise.all(chunk.map((s) => chat(key, model, s)));
    for (const [j, r] of answers.entries()) {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      out.set(chunk[j] as string, r.body);
    }
  }
  return out;
}

const requestIdOf = (completion: { id: string }) => completion.id.replace(/^chatcmpl-/, '');

async function exposuresOf(experimentId: string): Promise<Array<{ request_id: string; variant: string; subject: string }>> {
  return stack.db.selectFrom('experiment_exposures').select(['request_id', 'variant', 'subject']).where('experiment_id', '=', experimentId).execute();
}

/** `perVariant` subjects for each variant of the experiment, by the same sticky hash the assignment uses. */
function balancedSubjects(experimentId: string, variants: Array<{ name: string; weight: number }>, perVariant: number, prefix: string): Map<string, string[]> {
  const by = new Map<string, string[]>(variants.map((v) => [v.name, []]));
  for (let i = 0; [...by.values()].some((l) => l.length < perVariant); i++) {
    const s = `${prefix}-${i}`;
    const list = by.get(assignVariant(experimentId, s, variants).name) as string[];
    if (list.length < perVariant) list.push(s);
  }
  return by;
}

beforeAll(async () => {
  stack = await startTestStack();
  await addInstantModel(stack, 'exp-main');
  await addInstantModel(stack, 'exp-zero');
  await addInstantModel(stack, 'exp-srm');
  await addInstantModel(stack, 'exp-subject');
  await addInstantModel(stack, 'exp-meta');
  const t = await tenantWithAdmin();
  tenantId = t.tenantId;
  adminKey = t.adminKey;
  devKey = await keyOf(adminKey, tenantId, 'developer');
  userKey = await keyOf(adminKey, tenantId, 'user');
  const o = await tenantWithAdmin();
  other = { tenantId: o.tenantId, adminKey: o.adminKey, key: await keyOf(o.adminKey, o.tenantId, 'developer') };
});
afterAll(async () => {
  await stack?.stop();
});

describe('an experiment from creation to promotion', () => {
  let expId: string;
  const VARIANTS = [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }];
  let subjects: Map<string, string[]>;
  let completions: Map<string, any>;

  it('is created as a draft; a template with an unknown placeholder is refused naming the field; a draft assigns nobody', async () => {
    const bad = await call(adminKey, 'POST', '/v1/admin/experiments', {
      name: 'tone', model: 'exp-main', variants: [{ name: 'a' }, { name: 'b', overrides: { system_template: 'Hi {{name}}' } }],
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('variants[1].overrides.system_template');
    const unknown = await call(adminKey, 'POST', '/v1/admin/experiments', { name: 'x', model: 'exp-main', variants: [{ name: 'a' }, { name: 'b' }], colour: 'red' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.param).toBe('colour');

    const r = await call(adminKey, 'POST', '/v1/admin/experiments', {
      name: 'tone', model: 'exp-main', status: 'draft', control: 'a',
      variants: [{ name: 'a' }, { name: 'b', overrides: { system_prompt: 'Answer in four tokens.', max_tokens: 1 } }],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ object: 'experiment', status: 'draft', tenant_id: tenantId, control: 'a', traffic_allocation: 1 });
    expId = r.body.id;
    subjects = balancedSubjects(expId, VARIANTS, 15, 'user');

    const drafted = await chat(devKey, 'exp-main', 'user-draft');
    expect(drafted.status).toBe(200);
    // Admission (which would record the exposure) ran before the completion was answered.
    expect(await exposuresOf(expId)).toHaveLength(0);
  });

  it('starts; requests from different users are assigned stickily and get their variant', async () => {
    const started = await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/start`);
    expect(started.status).toBe(200);
    expect(started.body.status).toBe('running');
    const all = [...(subjects.get('a') as string[]), ...(subjects.get('b') as string[])];
    completions = await requestsFrom(devKey, 'exp-main', all);
    const exposures = await exposuresOf(expId);
    expect(exposures).toHaveLength(30);
    for (const e of exposures) expect(e.variant).toBe(assignVariant(expId, e.subject, VARIANTS).name);
    // Variant b's overrides reached inference: its max_tokens (1: the instant backend's reply
    // "ok" is cut to one token) and its system prompt (the instant backend counts the prompt's
    // bytes: "system: Answer in four tokens.\n" more).
    const [sa, sb] = [subjects.get('a')?.[0] as string, subjects.get('b')?.[0] as string];
    const ua = completions.get(sa).usage;
    const ub = completions.get(sb).usage;
    expect(ua.completion_tokens).toBe(2);
    expect(ub.completion_tokens).toBe(1);
    expect(ub.prompt_tokens - ua.prompt_tokens).toBe(Buffer.byteLength('system: Answer in four tokens.\n'));
    // Sticky: the same user again gets the same variant.
    const again = await chat(devKey, 'exp-main', sb);
    expect(again.body.usage.completion_tokens).toBe(1);
  });

  it('takes feedback: idempotent, last write wins, by the requesting key or a key with feedback:write; another tenant gets 404', async () => {
    const [first] = subjects.get('a') as string[];
    const id = completions.get(first as string).id as string;
    const once = await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: true });
    expect(once.status, JSON.stringify(once.body)).toBe(201);
    const twice = await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: true });
    expect(twice.status).toBe(200);
    expect(twice.body).toEqual(once.body);
    const changed = await call(adminKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: false });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ id: once.body.id, value: false });
    expect(await stack.db.selectFrom('feedback').select('value_bool').where('request_id', '=', requestIdOf({ id })).execute()).toEqual([{ value_bool: false }]);
    // Back to true for the counts below.
    expect((await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: true })).status).toBe(200);

    expect((await call(other.key, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: false })).status).toBe(404);
    expect((await call(other.adminKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: false })).status).toBe(404);
    expect((await call(stack.adminKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: false })).status).toBe(404);
    // A `user` key of the same tenant did not make the request and lacks feedback:write.
    const denied = await call(userKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: false });
    expect(denied.status).toBe(403);
    const both = await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: true, score: 3 });
    expect(both.status).toBe(400);
    expect((await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'stars', score: 'five' })).body.error.param).toBe('score');
    expect(await stack.db.selectFrom('feedback').select('id').where('tenant_id', '=', other.tenantId).execute()).toHaveLength(0);
  });

  it('returns results whose per-variant counts equal what was sent, with the statistics and methods shown', async () => {
    // Thumbs: every b completion up, the first 5 of a up and the rest down; a score on each.
    const sent = { a: { up: 0, n: 0 }, b: { up: 0, n: 0 } };
    for (const name of ['a', 'b'] as const) {
      for (const [i, s] of (subjects.get(name) as string[]).entries()) {
        const up = name === 'b' || i < 5;
        const id = completions.get(s).id;
        expect([200, 201]).toContain((await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'thumbs', value: up })).status);
        expect((await call(devKey, 'POST', '/v1/feedback', { completion_id: id, metric: 'rating', score: name === 'b' ? 4 + (i % 2) : 2 + (i % 2) })).status).toBe(201);
        sent[name].n += 1;
        if (up) sent[name].up += 1;
      }
    }
    const r = await call(adminKey, 'GET', `/v1/admin/experiments/${expId}/results`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ object: 'experiment.results', control: 'a', trustworthy: true, srm: { passed: true } });
    expect(r.body.methods).toMatchObject({ means: 'welch_t_test', multiple_comparisons: 'holm', sequential: { method: 'msprt' } });
    const [a, b] = r.body.variants;
    // b's sticky user sent a second request: 16 exposures.
    expect(a).toMatchObject({ name: 'a', exposures: 15, completions: 15, errors: 0 });
    expect(b).toMatchObject({ name: 'b', exposures: 16, completions: 16, errors: 0 });
    expect(a.metrics['feedback.thumbs']).toMatchObject({ kind: 'rate', n: sent.a.n, estimate: sent.a.up / sent.a.n });
    expect(b.metrics['feedback.thumbs']).toMatchObject({ kind: 'rate', n: sent.b.n, estimate: 1 });
    expect(b.metrics['feedback.rating'].vs_control.difference).toBeCloseTo(2, 9);
    expect(b.metrics['feedback.rating'].vs_control.underpowered).toBe(true);
    expect(b.metrics['completion_tokens']).toMatchObject({ kind: 'mean', n: 16, estimate: 1 });
    expect(a.metrics['completion_tokens']).toMatchObject({ kind: 'mean', n: 15, estimate: 2 });
    expect(b.metrics['latency_p50_ms'].kind).toBe('percentile');
    expect(b.metrics['cost_micros_per_request'].n).toBe(16);
    // Another tenant does not see it.
    expect((await call(other.adminKey, 'GET', `/v1/admin/experiments/${expId}/results`)).status).toBe(404);
    expect((await call(other.adminKey, 'POST', `/v1/admin/experiments/${expId}/pause`)).status).toBe(404);
  });

  it('paused, it assigns nobody; resumed, it assigns again', async () => {
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/pause`)).body.status).toBe('paused');
    const before = (await exposuresOf(expId)).length;
    const paused = await chat(devKey, 'exp-main', 'user-paused');
    expect(paused.status).toBe(200);
    expect(paused.body.usage.completion_tokens).toBe(2);
    expect(await exposuresOf(expId)).toHaveLength(before);
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/pause`)).status).toBe(409);
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/resume`)).body.status).toBe('running');
  });

  it('promotes a variant: the default for the model changes, the experiment stops, it is audited', async () => {
    const bad = await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/promote`, { variant: 'z' });
    expect(bad.status).toBe(400);
    const p = await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/promote`, { variant: 'b' });
    expect(p.status, JSON.stringify(p.body)).toBe(200);
    expect(p.body).toMatchObject({ status: 'stopped', promoted_variant: 'b' });
    const before = (await exposuresOf(expId)).length;
    // A new user, outside any experiment now, gets b's overrides, and is not counted.
    const after = await chat(devKey, 'exp-main', 'user-after-promotion');
    expect(after.status).toBe(200);
    expect(after.body.usage.completion_tokens).toBe(1);
    expect(await exposuresOf(expId)).toHaveLength(before);
    // Stopped is final.
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/start`)).status).toBe(409);
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${expId}/resume`)).status).toBe(409);
    const audit = await call(adminKey, 'GET', '/v1/admin/audit?limit=100');
    const actions = (audit.body.data as Array<{ action: string; target: string }>).filter((r) => r.target === `experiment:${expId}`).map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(['experiment.created', 'experiment.started', 'experiment.paused', 'experiment.resumed', 'experiment.promoted']));
    // Another tenant's requests on the model keep the model's own defaults.
    const theirs = await chat(other.key, 'exp-main', 'someone');
    expect(theirs.body.usage.completion_tokens).toBe(2);
  });
});

describe('who is counted', () => {
  it('the subject is `user`, else the X-Sluice-Subject header, else the key; a malformed header is a 400 before anything is written', async () => {
    const r = await call(adminKey, 'POST', '/v1/admin/experiments', { name: 'subject', model: 'exp-subject', variants: [{ name: 'a' }, { name: 'b' }] });
    expect(r.status).toBe(201);
    const send = (headers: Record<string, string>, user?: string) => fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${devKey}`, 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'exp-subject', messages: [{ role: 'user', content: 'hi' }], ...(user ? { user } : {}) }),
    });
    expect((await send({ 'X-Sluice-Subject': 'org-42' })).status).toBe(200);
    expect((await send({ 'X-Sluice-Subject': 'org-42' }, 'end-user-1')).status).toBe(200);
    expect((await send({})).status).toBe(200);
    const before = await stack.db.selectFrom('requests').select('id').where('model', '=', 'exp-subject').execute();
    const bad = await send({ 'X-Sluice-Subject': 'x'.repeat(300) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('X-Sluice-Subject');
    expect(await stack.db.selectFrom('requests').select('id').where('model', '=', 'exp-subject').execute()).toHaveLength(before.length);
    const subjects = (await exposuresOf(r.body.id)).map((e) => e.subject).sort();
    const devKeyId = (await stack.db.selectFrom('api_keys').select('id').where('tenant_id', '=', tenantId).where('role', '=', 'developer').executeTakeFirstOrThrow()).id;
    expect(subjects).toEqual([devKeyId, 'end-user-1', 'org-42'].sort());
  });

  it('traffic_allocation 0: nobody enters, nobody is counted', async () => {
    const r = await call(adminKey, 'POST', '/v1/admin/experiments', {
      name: 'none', model: 'exp-zero', traffic_allocation: 0, variants: [{ name: 'a' }, { name: 'b', overrides: { max_tokens: 1 } }],
    });
    expect(r.status).toBe(201);
    const done = await requestsFrom(devKey, 'exp-zero', ['z1', 'z2', 'z3', 'z4', 'z5', 'z6']);
    for (const c of done.values()) expect(c.usage.completion_tokens).toBe(2);
    expect(await exposuresOf(r.body.id)).toHaveLength(0);
    const results = await call(adminKey, 'GET', `/v1/admin/experiments/${r.body.id}/results`);
    expect(results.body.variants.map((v: { exposures: number }) => v.exposures)).toEqual([0, 0]);
  });

  it('SRM: exposures of one variant written past the assignment (a targeting bug) make the results untrustworthy', async () => {
    const r = await call(adminKey, 'POST', '/v1/admin/experiments', { name: 'srm', model: 'exp-srm', variants: [{ name: 'a' }, { name: 'b' }] });
    expect(r.status).toBe(201);
    const id = r.body.id as string;
    const subjects = balancedSubjects(id, [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }], 10, 'srm');
    await requestsFrom(devKey, 'exp-srm', [...(subjects.get('a') as string[]), ...(subjects.get('b') as string[])]);
    const fair = await call(adminKey, 'GET', `/v1/admin/experiments/${id}/results`);
    expect(fair.body).toMatchObject({ trustworthy: true, srm: { passed: true, observed: { a: 10, b: 10 } } });
    // The bug: 60 requests that should have been assigned by the hash were all sent to `a`.
    await sql`
      insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant)
      select 'req_srm_' || g, ${id}, ${tenantId}, 'bugged-' || g, 'a' from generate_series(1, 60) g`.execute(stack.db);
    const skewed = await call(adminKey, 'GET', `/v1/admin/experiments/${id}/results`);
    expect(skewed.status).toBe(200);
    expect(skewed.body).toMatchObject({ trustworthy: false, srm: { passed: false, observed: { a: 70, b: 10 } } });
    expect(skewed.body.srm.p_value).toBeLessThan(0.001);
    // Stopped: it assigns nobody.
    expect((await call(adminKey, 'POST', `/v1/admin/experiments/${id}/stop`)).body.status).toBe('stopped');
    await requestsFrom(devKey, 'exp-srm', ['srm-after-stop']);
    expect((await exposuresOf(id)).filter((e) => e.subject === 'srm-after-stop')).toHaveLength(0);
  });
});

/** A streamed chat completion read to its end; the completion's ID. */
async function streamChat(key: string, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  expect(text).toContain('data: [DONE]');
  const id = /"id":"(chatcmpl-[^"]+)"/.exec(text)?.[1];
  if (id === undefined) throw new Error(`no completion ID in ${text.slice(0, 200)}`);
  return id;
}

describe('targeting by metadata', () => {
  const base = { model: 'exp-meta', messages: [{ role: 'user', content: 'hello' }], max_tokens: 12 };

  it('a malformed rule is a 400 naming the field; a malformed request metadata is a 400 before anything is written', async () => {
    const create = (metadata: unknown) => call(adminKey, 'POST', '/v1/admin/experiments', { name: 'm', model: 'exp-meta', variants: [{ name: 'a' }, { name: 'b' }], targeting: { metadata } });
    for (const [rule, param] of [
      [{ plan: 3 }, 'targeting.metadata.plan'], [{ plan: [] }, 'targeting.metadata.plan'], [{ plan: ['a', 'v'.repeat(513)] }, 'targeting.metadata.plan[1]'],
      [{}, 'targeting.metadata'], [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])), 'targeting.metadata'], [{ ['k'.repeat(65)]: 'v' }, 'targeting.metadata'],
    ] as const) {
      const r = await create(rule);
      expect(r.status, JSON.stringify(rule)).toBe(400);
      expect(r.body.error.param).toBe(param);
    }
    const before = await stack.db.selectFrom('requests').select('id').where('model', '=', 'exp-meta').execute();
    const bad = await call(devKey, 'POST', '/v1/chat/completions', { ...base, metadata: { plan: 7 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ param: 'metadata.plan', type: 'invalid_request_error' });
    expect(await stack.db.selectFrom('requests').select('id').where('model', '=', 'exp-meta').execute()).toHaveLength(before.length);
  });

  it('only requests whose metadata meets the rule enter and are counted (chat, streamed chat, responses); the streamed ones report TTFT', async () => {
    const r = await call(adminKey, 'POST', '/v1/admin/experiments', {
      name: 'by plan', model: 'exp-meta', targeting: { metadata: { plan: ['pro', 'team'], region: 'eu' } },
      variants: [{ name: 'a' }, { name: 'b', overrides: { max_tokens: 1 } }],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.targeting).toEqual({ key_ids: null, metadata: { plan: ['pro', 'team'], region: 'eu' } });
    const id = r.body.id as string;
    const variantOf = (subject: string) => assignVariant(id, subject, [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }]).name;
    const tokensOf = (subject: string) => (variantOf(subject) === 'b' ? 1 : 2);

    const matching: string[] = [];
    // Sync chat: matching, another plan, no region, no metadata at all.
    for (let i = 0; i < 6; i++) {
      const user = `meta-in-${i}`;
      const ok = await call(devKey, 'POST', '/v1/chat/completions', { ...base, user, metadata: { plan: i % 2 ? 'pro' : 'team', region: 'eu', extra: 'x' } });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      expect(ok.body.usage.completion_tokens).toBe(tokensOf(user));
      matching.push(user);
    }
    for (const [i, metadata] of [{ plan: 'free', region: 'eu' }, { plan: 'pro' }, { plan: 'PRO', region: 'eu' }, undefined].entries()) {
      const user = `meta-out-${i}`;
      const out = await call(devKey, 'POST', '/v1/chat/completions', { ...base, user, ...(metadata ? { metadata } : {}) });
      expect(out.status, JSON.stringify(out.body)).toBe(200);
      // The model's default (2 tokens), whichever variant the subject would have hashed to.
      expect(out.body.usage.completion_tokens).toBe(2);
    }
    // No stream yet: TTFT is null, with the reason.
    const before = await call(adminKey, 'GET', `/v1/admin/experiments/${id}/results`);
    for (const v of before.body.variants) {
      expect(v.metrics['ttft_p50_ms']).toMatchObject({ kind: 'percentile', n: 0, estimate: null, reason: expect.stringContaining('streamed') });
      expect(v.metrics['latency_p50_ms'].n).toBeGreaterThan(0);
    }
    // Streamed chat: two matching per variant, one not matching.
    const streamed = new Map<string, string[]>();
    for (const [variant, users] of balancedSubjects(id, [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }], 2, 'meta-stream')) {
      for (const user of users) {
        const completionId = await streamChat(devKey, { ...base, user, metadata: { plan: 'pro', region: 'eu' } });
        streamed.set(variant, [...(streamed.get(variant) ?? []), requestIdOf({ id: completionId })]);
        matching.push(user);
      }
    }
    await streamChat(devKey, { ...base, user: 'meta-stream-out', metadata: { plan: 'pro', region: 'us' } });
    // Responses carry metadata too.
    const resp = await call(devKey, 'POST', '/v1/responses', { model: 'exp-meta', input: 'hi', user: 'meta-resp-in', metadata: { plan: 'team', region: 'eu' } });
    expect(resp.status, JSON.stringify(resp.body)).toBe(200);
    matching.push('meta-resp-in');
    const respOut = await call(devKey, 'POST', '/v1/responses', { model: 'exp-meta', input: 'hi', user: 'meta-resp-out', metadata: { plan: 'team' } });
    expect(respOut.status, JSON.stringify(respOut.body)).toBe(200);

    const exposures = await exposuresOf(id);
    expect(exposures.map((e) => e.subject).sort()).toEqual([...matching].sort());
    for (const e of exposures) expect(e.variant).toBe(variantOf(e.subject));

    const results = await call(adminKey, 'GET', `/v1/admin/experiments/${id}/results`);
    expect(results.status, JSON.stringify(results.body)).toBe(200);
    const total = (results.body.variants as Array<{ exposures: number }>).reduce((a, v) => a + v.exposures, 0);
    expect(total).toBe(matching.length);
    // TTFT over the streamed completions only: the variant's two streams' `ttft_ms` (exact below
    // 1 s), p50 the lower of the two (rank ⌈2 · 0.5⌉ = 1) and p95 the higher (rank 2).
    for (const v of results.body.variants) {
      const ids = streamed.get(v.name) as string[];
      const rows = await stack.db.selectFrom('requests').select('ttft_ms').where('id', 'in', ids).execute();
      const ttfts = rows.map((row) => row.ttft_ms as number).sort((x, y) => x - y);
      expect(ttfts).toHaveLength(2);
      expect(v.metrics['ttft_p50_ms']).toMatchObject({ kind: 'percentile', n: 2, estimate: Math.min(...ttfts) });
      expect(v.metrics['ttft_p95_ms']).toMatchObject({ kind: 'percentile', n: 2, estimate: Math.max(...ttfts) });
      expect(v.metrics['ttft_p50_ms'].reason).toBeUndefined();
    }
    const treatment = results.body.variants.find((v: { is_control: boolean }) => !v.is_control);
    expect(treatment.metrics['ttft_p50_ms'].vs_control).toMatchObject({ underpowered: true });
    expect(typeof treatment.metrics['ttft_p50_ms'].vs_control.difference).toBe('number');
  });
});
