import { eq } from 'drizzle-orm';
import { DEFAULT_ALERT_SETTINGS, type AlertSettings } from '../core/alerts';
import type { DbOrTx } from './client';
import { alertSettings } from './schema';

/** The tenant's alert-fatigue settings, or the defaults when it never set any. */
export async function tenantAlertSettings(db: DbOrTx, tenantId: string): Promise<AlertSettings> {
  const [row] = await db.select({ settings: alertSettings.settings }).from(alertSettings).where(eq(alertSettings.tenantId, tenantId));
  return row ? { ...DEFAULT_ALERT_SETTINGS, ...row.settings } : DEFAULT_ALERT_SETTINGS;
}

export async function saveAlertSettings(db: DbOrTx, tenantId: string, settings: AlertSettings, updatedBy: string): Promise<void> {
  await db
    .insert(alertSettings)
    .values({ tenantId, settings, updatedBy })
    .onConflictDoUpdate({ target: alertSettings.tenantId, set: { settings, updatedBy, updatedAt: new Date() } });
}
