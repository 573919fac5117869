/**
 * Where top-up money comes from. The embedded default issues an invoice that stays pending
 * until the operator marks it paid; a card processor implements the same interface.
 */
export interface PaymentProvider {
  readonly name: string;
  startTopUp(request: {
    organizationId: string;
    topUpId: string;
    amount: string;
    paymentMethod: string | null;
  }): Promise<{ status: 'pending' | 'paid' | 'failed'; externalId: string }>;
}

export function createInvoiceProvider(): PaymentProvider {
  return {
    name: 'invoice',
    async startTopUp(request) {
      return { status: 'pending', externalId: `invoice:${request.topUpId}` };
    },
  };
}
