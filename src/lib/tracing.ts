import { createRequire } from 'node:module';
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { FastifyInstance } from 'fastify';

/**
 * OpenTelemetry traces over OTLP/HTTP (JSON) to `endpoint` + `/v1/traces`: a server span per
 * request, named by its route pattern, with a child span per PostgreSQL query. Imported only when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (src/main.ts), so without it no tracing code runs at all.
 */
export async function startTracing(endpoint: string) {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'orgbase' }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` })),
    ],
  });
  // The global provider and the AsyncLocalStorage context manager, so spans nest across awaits.
  provider.register();
  const instrumentations = [
    // Health probes and scrapes would be most spans and say nothing.
    new HttpInstrumentation({
      ignoreIncomingRequestHook: (req) => /^\/(healthz|readyz|metrics)(\?|$)/.test(req.url ?? ''),
    }),
    new PgInstrumentation({ requireParentSpan: true }),
  ];
  for (const i of instrumentations) {
    i.setTracerProvider(provider);
    i.enable();
  }
  // This module loads after the app's modules (it is imported lazily), so `node:http` and `pg`
  // are already loaded: requiring them again lets the hooks patch them (in place, on their
  // prototypes, which the server and the pools already created share).
  const require = createRequire(import.meta.url);
  require('node:http');
  require('pg');

  return {
    /** Names the request's span by its route pattern (`POST /api/organizations/:id/credits/deduct`). */
    instrument(app: FastifyInstance) {
      app.addHook('onRequest', (req, _reply, done) => {
        const route = req.routeOptions.url;
        const span = trace.getActiveSpan();
        if (span && route) {
          span.updateName(`${req.method} ${route}`);
          span.setAttribute('http.route', route);
        }
        done();
      });
    },
    /** Sends what is buffered; at shutdown. */
    shutdown: () => provider.shutdown().catch(() => {}),
  };
}
