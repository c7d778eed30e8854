export async function createKubeCoordination(o: unknown): Promise<never> { throw new Error("todo"); }
