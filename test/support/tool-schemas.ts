/**
 * The function schemas the tool tests give the demo model (chat tools and Responses function
 * tools alike). Bounded strings, enums and booleans: the random model cannot run an argument past
 * the output token limit.
 */
export const weatherSchema = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 10 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
};

export const lookupSchema = {
  type: 'object',
  properties: { query: { type: 'string', maxLength: 8 }, exact: { type: 'boolean' } },
  required: ['query', 'exact'],
  additionalProperties: false,
};

/** Each test function's schema, by name. */
export const schemaOf: Record<string, object> = { get_weather: weatherSchema, lookup: lookupSchema };
