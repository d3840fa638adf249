import type { AgentTurnInput, AgentTurnResult, ToolCallInput, ToolCallRecord, ToolCallKey } from '../core/contracts';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type OpenAI from 'openai';
import { offeredTools, type RequestedToolCall } from '../core/agent';
import { modelTurnAction, stepRecordAction, toolCallAction } from '../core/audit';
import { wouldOverrunBudget } from '../core/budget';
import { TOOL_CALL_SKILL, costMetricModel } from '../core/costs';
import type { OutputRef } from '../core/outputs';
import type { AgentInput, PlanStep } from '../core/plan';
import { PRICED_AT_DEAREST_RATE } from '../core/pricing';
import { ReferenceError, referencedSteps, resolveReferences, type ReferencedOutput } from '../core/references';
import { chatCompletionBoundUsd } from '../core/step-cost';
import { STEP_HEARTBEAT_INTERVAL_MS } from '../core/step-heartbeat';
import { toSafeText } from '../core/text-safety';
import { toolMayHaveRun, type ToolCallResolution } from '../core/tool-calls';
import type { ToolId } from '../core/tools';
import { recordAck } from '../db/acks';
import { declareToolCalls } from '../db/audit';
import { addToCostRollup } from '../db/costs';
import { runPlan } from '../db/runs';
import {
  addRunProgress,
  agentTranscript,
  flagThresholdCrossed,
  insertTraceRow,
  outputOf,
  planStepOutputs,
  recordedItem,
  sha256Hex,
  storeOutput,
  type ItemKey,
  type StoredOutput,
} from '../db/steps';
import { recordToolCallResolution, recordedToolCall } from '../db/tool-calls';
import type { ActivityDeps } from './deps';
import { recorded } from './recording';
import { complete, pricingNote, redactorFor } from './skills/chat';
import { contentTypeOf } from '../db/content-type';
import { ToolCallLostError } from './tools/servers';

/** What a person sees of a call's arguments. */
const ARGS_PREVIEW_CHARS = 200;
const PREVIEW_CHARS = 200;

/** The assistant message an agent turn stores, as the provider's API takes it back. */
interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
}

function argsHash(tool: ToolId | null, functionName: string, args: string): string {
  return sha256Hex(`${tool ?? functionName}\n${args}`);
}

function asRef(output: StoredOutput): OutputRef {
  return { id: output.id, sha256: output.sha256, bytes: output.bytes, contentType: output.contentType };
}

/** A run's plan never changes: each worker keeps the latest few instead of reading them every turn. */
const plans = new Map<string, PlanStep[]>();
const PLANS_KEPT = 500;

function remember(runId: string, plan: PlanStep[]): void {
  plans.delete(runId);
  plans.set(runId, plan);
  if (plans.size > PLANS_KEPT) plans.delete(plans.keys().next().value!);
}

export function createAgentActivities({ db, llm, metrics, limits, tools, logger }: ActivityDeps) {
  /** The worker's secrets, kept out of what tool servers send back (`core/redaction.ts`). */
  const redactor = redactorFor(llm);
  /** The calls an assistant message asks for, as the workflow governs them. */
  function requestedCalls(message: AssistantMessage): RequestedToolCall[] {
    return (message.tool_calls ?? []).map((call, callIndex) => {
      const tool = tools.byFunctionName(call.function.name)?.id ?? null;
      const args = call.function.arguments ?? '';
      return {
        callIndex,
        callId: call.id,
        tool,
        functionName: call.function.name,
        argsSha256: argsHash(tool, call.function.name, args),
        argsBytes: Buffer.byteLength(args, 'utf8'),
        argsPreview: toSafeText(args, ARGS_PREVIEW_CHARS) ?? '',
      };
    });
  }

  async function agentStepOf(runId: string, stepIndex: number): Promise<{ plan: PlanStep[]; step: Extract<PlanStep, { skill: 'agent' }> }> {
    const plan = plans.get(runId) ?? (await runPlan(db, runId));
    if (plan) remember(runId, plan);
    const step = plan?.[stepIndex];
    if (!plan || step?.skill !== 'agent') throw ApplicationFailure.nonRetryable(`run ${runId} has no agent step ${stepIndex + 1}`, 'NotAnAgentStep');
    return { plan, step };
  }

  /** The conversation so far: the step's instructions and messages, then every turn and tool result before `turn`. */
  async function conversation(runId: string, plan: PlanStep[], stepIndex: number, input: AgentInput, turn: number): Promise<OpenAI.Chat.Completions.ChatCompletionMessageParam[]> {
    const references = referencedSteps(plan, stepIndex, input);
    const stored = await planStepOutputs(db, runId, Object.values(references));
    const outputs = new Map<string, ReferencedOutput>(Object.entries(references).flatMap(([name, index]) => (stored.has(index) ? [[name, stored.get(index)!]] : [])));
    let opening: Pick<AgentInput, 'instructions' | 'messages'>;
    try {
      opening = resolveReferences({ instructions: input.instructions, messages: input.messages }, outputs);
    } catch (err) {
      if (err instanceof ReferenceError) throw ApplicationFailure.nonRetryable(err.message, 'REFERENCE_UNRESOLVED');
      throw err;
    }
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [];
    if (opening.instructions !== undefined) messages.push({ role: 'system', content: opening.instructions });
    messages.push(...(opening.messages ?? []));
    let asked: AssistantMessage | null = null;
    for (const output of await agentTranscript(db, runId, stepIndex, turn)) {
      if (output.kind === 'turn') {
        asked = JSON.parse(output.content) as AssistantMessage;
        messages.push(asked);
      } else {
        const call = asked?.tool_calls?.[output.callIndex ?? -1];
        if (call) messages.push({ role: 'tool', tool_call_id: call.id, content: output.content });
      }
    }
    return messages;
  }

  /** The result of a turn that was recorded, rebuilt from its record (a retry does not ask the model again). */
  async function recordedTurn(runId: string, item: ItemKey): Promise<AgentTurnResult | null> {
    const found = await recordedItem(db, runId, item);
    if (!found?.output) return null;
    const { row, output } = found;
    const message = JSON.parse(output.content) as AssistantMessage;
    const calls = requestedCalls(message);
    const stepOutput = calls.length === 0 ? await outputOf(db, runId, { stepIndex: item.stepIndex }) : undefined;
    return {
      kind: calls.length ? 'tools' : 'answered',
      model: row.model,
      tokensIn: row.tokensIn,
      tokensOut: row.tokensOut,
      costUsd: row.costUsd,
      durationMs: row.durationMs,
      output: asRef(output),
      stepOutput: stepOutput ? asRef(stepOutput) : null,
      toolCalls: calls,
      failure: row.status === 'failed' ? { code: 'OUTPUT_TOO_LARGE', message: row.outputPreview ?? 'answer too large' } : null,
      thresholdCrossed: false,
    };
  }

  /**
   * One model turn of an agent step: the conversation so far (from the stored outputs), the tools
   * the policy allows, a bound on what the turn may cost (refused before the model is asked when
   * it would overrun the budget), then the reply recorded with its trace row, ack, the run's
   * totals and an expectation for each tool call it asks for, in one transaction.
   */
  async function agentTurn(input: AgentTurnInput): Promise<AgentTurnResult> {
    const { runId, tenantId, stepIndex, turn } = input;
    const item = { stepIndex, turn };
    const earlier = await recorded('reading the turn record', () => recordedTurn(runId, item));
    if (earlier) return earlier;

    const { plan, step } = await recorded('reading the agent step', () => agentStepOf(runId, stepIndex));
    const agent = step.input;
    const messages = await recorded('reading the conversation', () => conversation(runId, plan, stepIndex, agent, turn));
    const available = tools.tools();
    const offered = new Set(offeredTools({ allow: input.allowedTools, requireApproval: [], maxCallsPerRun: 0, prices: [], onDenied: 'RETURN_TO_MODEL' }, agent.tools, available.map((t) => t.id)));
    const functions: OpenAI.Chat.Completions.ChatCompletionFunctionTool[] = available
      .filter((t) => offered.has(t.id))
      .map((t) => ({ type: 'function', function: { name: t.functionName, description: t.description, parameters: t.inputSchema as Record<string, unknown> } }));
    const model = agent.model ?? llm.model;
    const promptBytes = Buffer.byteLength(JSON.stringify(messages), 'utf8') + Buffer.byteLength(JSON.stringify(functions), 'utf8');
    const predictedUsd = chatCompletionBoundUsd({ promptBytes, messages: messages.length, maxTokens: agent.maxTokens, model: agent.model }, input.prices);
    if (!input.acceptOverrun && wouldOverrunBudget(input.spentUsd, predictedUsd, input.budgetUsd)) {
      return {
        kind: 'refused',
        predictedUsd,
        reason: `predicted overrun: turn ${turn + 1} of step ${stepIndex + 1} (agent) would cost at most $${predictedUsd} with $${input.spentUsd} spent, over the run's budget of $${input.budgetUsd}; refused before the model was asked`,
      };
    }

    const started = performance.now();
    const ctx = Context.current();
    const heartbeat = setInterval(() => ctx.heartbeat({ stepIndex, turn }), STEP_HEARTBEAT_INTERVAL_MS);
    let completion;
    try {
      completion = await complete(
        llm,
        {
          model,
          messages,
          max_tokens: agent.maxTokens,
          ...(functions.length ? { tools: functions } : {}),
          ...(agent.temperature !== undefined ? { temperature: agent.temperature } : {}),
        },
        { signal: ctx.cancellationSignal, prices: input.prices },
      );
    } finally {
      clearInterval(heartbeat);
    }
    const durationMs = Math.round(performance.now() - started);
    metrics.stepDuration.observe({ skill: 'agent', outcome: 'ok' }, durationMs / 1000);
    const reply: AssistantMessage = {
      role: 'assistant',
      content: completion.message.content === null ? null : (toSafeText(completion.message.content, Number.MAX_SAFE_INTEGER) ?? ''),
      ...(completion.message.tool_calls?.length
        ? {
            tool_calls: completion.message.tool_calls.flatMap((c) =>
              c.type === 'function' ? [{ id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: toSafeText(c.function.arguments, Number.MAX_SAFE_INTEGER) ?? '' } }] : [],
            ),
          }
        : {}),
    };
    const calls = requestedCalls(reply);
    const answer = calls.length === 0 ? (reply.content ?? '') : null;
    const answerBytes = answer === null ? 0 : Buffer.byteLength(answer, 'utf8');
    const failure =
      answer !== null && answerBytes > limits.maxStepOutputBytes
        ? { code: 'OUTPUT_TOO_LARGE' as const, message: `step ${stepIndex + 1} (agent) answered with ${answerBytes} bytes, over the limit of ${limits.maxStepOutputBytes} (MAX_STEP_OUTPUT_BYTES)` }
        : null;
    const billedModel = toSafeText(completion.model, 200) ?? '';

    return recorded(`recording turn ${turn + 1} of step ${stepIndex + 1}`, () => db.transaction(async (tx): Promise<AgentTurnResult> => {
      const output = await storeOutput(tx, { runId, tenantId, item, kind: 'turn', contentType: 'application/json', content: JSON.stringify(reply) });
      const stepOutput =
        answer !== null && !failure ? await storeOutput(tx, { runId, tenantId, item: { stepIndex }, kind: 'step', contentType: contentTypeOf(answer), content: answer }) : null;
      const inserted = await insertTraceRow(tx, runId, item, {
        kind: 'turn',
        skill: 'agent',
        model: billedModel,
        tokensIn: completion.tokensIn,
        tokensOut: completion.tokensOut,
        costUsd: completion.costUsd,
        durationMs,
        status: failure ? 'failed' : 'ok',
        // A billed model the price table does not know: priced at the dearest known rate, and said so.
        errorCode: failure?.code ?? (completion.pricing === 'dearest' ? PRICED_AT_DEAREST_RATE : null),
        outputPreview: failure?.message ?? (toSafeText(answer ?? calls.map((c) => `${c.tool ?? c.functionName}(${c.argsPreview})`).join(', '), PREVIEW_CHARS) ?? ''),
        outputId: output.id,
      });
      if (!inserted) return (await recordedTurn(runId, item))!;
      const totals = await addRunProgress(tx, runId, {
        costUsd: completion.costUsd,
        tokens: completion.tokensIn + completion.tokensOut,
        turns: 1,
        ...(stepOutput ? { stepsCompleted: stepIndex + 1 } : {}),
      });
      await addToCostRollup(tx, totals, { model: billedModel, skill: 'agent', costUsd: completion.costUsd, tokensIn: completion.tokensIn, tokensOut: completion.tokensOut });
      await recordAck(tx, { runId, action: modelTurnAction(stepIndex, turn), status: 'OK', resultId: output.id, metadata: { model: billedModel, toolCalls: calls.length, ...pricingNote({ ...completion, model: billedModel }) } });
      if (stepOutput) await recordAck(tx, { runId, action: stepRecordAction(stepIndex), status: 'OK', resultId: stepOutput.id, metadata: { skill: 'agent', turns: turn + 1 } });
      if (failure) await recordAck(tx, { runId, action: stepRecordAction(stepIndex), status: 'FAILED', error: failure.message, metadata: { skill: 'agent' } });
      // Declared before any of them runs: a call that is executed without one is drift.
      await declareToolCalls(tx, runId, calls.map((c) => toolCallAction(stepIndex, turn, c.callIndex)));
      const thresholdCrossed = await flagThresholdCrossed(tx, { runId, tenantId }, { costUsd: totals.costUsd, warningAtUsd: input.warningAtUsd, stepIndex });
      metrics.stepCost.inc({ skill: 'agent' }, completion.costUsd);
      metrics.costUsd.inc({ model: costMetricModel(billedModel), skill: 'agent' }, completion.costUsd);
      return {
        kind: calls.length ? 'tools' : 'answered',
        model: billedModel,
        tokensIn: completion.tokensIn,
        tokensOut: completion.tokensOut,
        costUsd: completion.costUsd,
        durationMs,
        output,
        stepOutput,
        toolCalls: calls,
        failure,
        thresholdCrossed,
      };
    }));
  }

  /** The call the model asked for in turn `turn`, as it wrote it. */
  async function requestedCall(runId: string, item: ToolCallKey) {
    const turnOutput = await outputOf(db, runId, { stepIndex: item.stepIndex, turn: item.turn });
    const call = turnOutput && (JSON.parse(turnOutput.content) as AssistantMessage).tool_calls?.[item.callIndex];
    if (!call) throw ApplicationFailure.nonRetryable(`run ${runId} has no tool call ${item.stepIndex}.${item.turn}.${item.callIndex}`, 'NoSuchToolCall');
    const tool = tools.byFunctionName(call.function.name);
    return { call, tool, args: call.function.arguments ?? '', argsSha256: argsHash(tool?.id ?? null, call.function.name, call.function.arguments ?? '') };
  }

  /**
   * One tool call the run's governor let through: its arguments checked against the tool's schema,
   * its trace row written as `started` before the request leaves (so a later attempt knows this
   * one may have run the tool), the call, then its resolution recorded. A lost attempt is repeated
   * only for a tool its server marks read-only or idempotent; any other ends `outcome_unknown`.
   */
  async function callTool(input: ToolCallInput): Promise<ToolCallRecord> {
    const { runId, tenantId, stepIndex, turn, callIndex } = input;
    const item = { stepIndex, turn, callIndex };
    // A retry that finds the call resolved learns it from its mark below (or from the resolution's own key).
    const { call, tool, args, argsSha256 } = await recorded('reading the call', () => requestedCall(runId, item));
    const resolve = async (resolution: ToolCallResolution, message: string, durationMs = 0): Promise<ToolCallRecord> => {
      const costUsd = toolMayHaveRun(resolution) ? input.priceUsd : 0;
      const done = await recorded(`recording tool call ${stepIndex}.${turn}.${callIndex}`, () =>
        db.transaction((tx) =>
          recordToolCallResolution(tx, { runId, tenantId, item, tool: tool?.id ?? call.function.name, argsSha256, resolution, message, costUsd, durationMs, warningAtUsd: input.warningAtUsd }),
        ),
      );
      metrics.domainWrites.inc({ domain: 'tools', action: 'tool_call', result: resolution });
      if (done) metrics.costUsd.inc({ model: costMetricModel(''), skill: TOOL_CALL_SKILL }, done.costUsd);
      return done ?? (await recorded('reading the call record', () => recordedToolCall(db, runId, item)))!;
    };
    if (!tool) return resolve('unknown_tool', `No tool server offers a tool named '${call.function.name}'. Nothing was run.`);

    let parsed: unknown;
    try {
      parsed = args.trim() === '' ? {} : JSON.parse(args);
    } catch (err) {
      return resolve('invalid_arguments', `The arguments for ${tool.id} are not valid JSON (${(err as Error).message}). Nothing was run.`);
    }
    const valid = tools.validateArguments(tool.id, parsed);
    if (!valid.ok) return resolve('invalid_arguments', `The arguments for ${tool.id} do not match its schema: ${valid.error}. Nothing was run.`);

    // The mark an attempt leaves before the request goes out; finding it, a retry knows the tool may have run.
    const claimed = await recorded('marking the call sent', () => insertTraceRow(db, runId, item, {
      kind: 'tool_call', skill: 'tool', model: '', tool: tool.id, tokensIn: 0, tokensOut: 0, costUsd: 0, durationMs: 0, status: 'started', argsSha256,
    }));
    if (!claimed) {
      const earlier = await recorded('reading the call record', () => recordedToolCall(db, runId, item));
      if (earlier) return earlier;
    }
    if (!claimed && !tool.retrySafe) {
      return resolve(
        'outcome_unknown',
        `The call to ${tool.id} was interrupted after it may have reached the tool, and its outcome is unknown. It was not repeated, because ${tool.id} is not marked read-only or idempotent. Check its effect before calling it again.`,
      );
    }

    const started = performance.now();
    const ctx = Context.current();
    const heartbeat = setInterval(() => ctx.heartbeat({ stepIndex, turn, callIndex }), STEP_HEARTBEAT_INTERVAL_MS);
    try {
      const outcome = await tools.call(tool.id, parsed as Record<string, unknown>, { signal: ctx.cancellationSignal });
      const durationMs = Math.round(performance.now() - started);
      // A server's error is error text (secrets and credential shapes redacted); its result is the
      // tenant's data, from which only the worker's own secrets are taken out.
      if (outcome.kind === 'refused') return resolve('refused_by_server', `The tool server refused the call to ${tool.id}: ${redactor.credentials(outcome.error)}. Nothing was run.`, durationMs);
      const text = redactor.secrets(outcome.structured !== undefined && outcome.text === '' ? JSON.stringify(outcome.structured) : outcome.text);
      const bytes = Buffer.byteLength(text, 'utf8');
      if (bytes > limits.maxStepOutputBytes) {
        return resolve('output_too_large', `The result of ${tool.id} was ${bytes} bytes, over the limit of ${limits.maxStepOutputBytes} (MAX_STEP_OUTPUT_BYTES); it was not kept.`, durationMs);
      }
      return resolve(outcome.isError ? 'tool_error' : 'ok', text, durationMs);
    } catch (err) {
      if (!(err instanceof ToolCallLostError)) throw err;
      const durationMs = Math.round(performance.now() - started);
      const lost = redactor.credentials(err.message);
      if (tool.retrySafe || !err.sentRequest) {
        logger.warn({ runId, tool: tool.id, err: lost }, 'tool call lost; retried, as it is safe to run again');
        throw ApplicationFailure.retryable(`call to ${tool.id} lost: ${lost}`, 'ToolCallLost');
      }
      return resolve(
        'outcome_unknown',
        `The call to ${tool.id} was interrupted (${lost}) and its outcome is unknown. It was not repeated, because ${tool.id} is not marked read-only or idempotent. Check its effect before calling it again.`,
        durationMs,
      );
    } finally {
      clearInterval(heartbeat);
    }
  }

  return { agentTurn, callTool };
}

